//! The write use cases. Each is one mutation submitted to the database's group commit
//! and answered once durable and visible; the committer checks it against the state it
//! applies to before logging it (the one check per write), so nothing here re-checks the
//! schema. What is checked here is what no state can change: request sizes and limits.

use tokio::sync::oneshot;

use crate::db::{Committed, DbError};
use crate::engine::{Mutation, Outcome};
use crate::query::Expr;
use crate::segments::Definition;
use crate::store::mutate::{CustomerUpdate, NewAttribute};

use super::{unexpected, App, AppError};

/// How a new saved segment is defined.
#[derive(Clone, Debug, PartialEq)]
pub enum NewDefinition {
    Where(String),
    Tree(Expr),
    /// An explicit list of customers (unknown ids are skipped).
    Static(Vec<u64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewSegment {
    pub id: String,
    pub description: String,
    pub definition: NewDefinition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCreated {
    pub sequence: u64,
    /// Members right after creation.
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembersEdited {
    pub sequence: u64,
    /// Memberships that changed.
    pub changed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upserted {
    pub sequence: u64,
    pub applied: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub sequence: u64,
    pub deleted: u32,
}

/// An upsert batch submitted and not yet answered (see [`App::submit_upsert`]).
pub struct PendingUpsert(oneshot::Receiver<Result<Committed, DbError>>);

impl PendingUpsert {
    /// Waits until the batch is durable and visible (or refused).
    pub async fn wait(self) -> Result<Upserted, AppError> {
        let c = self.0.await.map_err(|_| DbError::Closed)??;
        match c.outcome {
            Outcome::Upserted { applied } => Ok(Upserted { sequence: c.sequence, applied }),
            o => Err(unexpected(o)),
        }
    }
}

impl App {
    /// Saves a segment: a `where` text, a predicate tree or a static list.
    pub async fn create_segment(&self, s: NewSegment) -> Result<SegmentCreated, AppError> {
        let NewSegment { id, description, definition } = s;
        let (definition, members) = match definition {
            NewDefinition::Where(text) => {
                self.check_text(&text)?;
                (Definition::Sql(text), None)
            }
            NewDefinition::Tree(e) => {
                crate::query::check_limits(&e, &self.config().limits)?;
                (Definition::Tree(e), None)
            }
            NewDefinition::Static(ids) => {
                self.batch_limit("static_members.customer_ids length", ids.len())?;
                (Definition::Static, Some(ids))
            }
        };
        let c = self.commit(Mutation::CreateSegment { id: id.clone(), description, definition }).await?;
        let Outcome::SegmentCreated { count } = c.outcome else { return Err(unexpected(c.outcome)) };
        let Some(members) = members.filter(|m| !m.is_empty()) else {
            return Ok(SegmentCreated { sequence: c.sequence, count });
        };
        // integrator: two commits (a crash in between leaves the segment empty) until
        // `Mutation::CreateSegment` carries the initial members (branch `logfmt`); then
        // this becomes the one commit above with `members` in it, answering its count.
        let edited = self.edit_members(id, members, true).await?;
        Ok(SegmentCreated { sequence: edited.sequence, count: edited.changed })
    }

    /// Deletes a saved segment (not one another reads through `in_segment`); answers the
    /// commit sequence.
    pub async fn delete_segment(&self, id: String) -> Result<u64, AppError> {
        Ok(self.commit(Mutation::DeleteSegment { id }).await?.sequence)
    }

    /// Adds customers to a static segment.
    pub async fn add_members(&self, id: String, customer_ids: Vec<u64>) -> Result<MembersEdited, AppError> {
        self.edit_members(id, customer_ids, true).await
    }

    /// Removes customers from a static segment.
    pub async fn remove_members(
        &self,
        id: String,
        customer_ids: Vec<u64>,
    ) -> Result<MembersEdited, AppError> {
        self.edit_members(id, customer_ids, false).await
    }

    async fn edit_members(
        &self,
        id: String,
        customer_ids: Vec<u64>,
        add: bool,
    ) -> Result<MembersEdited, AppError> {
        self.batch_limit("customer_ids length", customer_ids.len())?;
        let c = self.commit(Mutation::EditMembers { id, customer_ids, add }).await?;
        match c.outcome {
            Outcome::MembersEdited { changed } => Ok(MembersEdited { sequence: c.sequence, changed }),
            o => Err(unexpected(o)),
        }
    }

    /// Partial updates of customers (a new id appends one), atomically.
    pub async fn upsert(&self, batch: Vec<CustomerUpdate>) -> Result<Upserted, AppError> {
        self.submit_upsert(batch)?.wait().await
    }

    /// Queues an upsert batch without waiting: batches submitted one after another commit
    /// in that order (what a pipelined stream of upserts relies on).
    pub fn submit_upsert(&self, batch: Vec<CustomerUpdate>) -> Result<PendingUpsert, AppError> {
        self.batch_limit("customers length", batch.len())?;
        Ok(PendingUpsert(self.submit(Mutation::Upsert(batch))?))
    }

    /// Deletes customers by id; unknown ids are skipped.
    pub async fn delete_customers(&self, customer_ids: Vec<u64>) -> Result<Deleted, AppError> {
        self.batch_limit("customer_ids length", customer_ids.len())?;
        let c = self.commit(Mutation::Delete(customer_ids)).await?;
        match c.outcome {
            Outcome::Deleted { deleted } => Ok(Deleted { sequence: c.sequence, deleted }),
            o => Err(unexpected(o)),
        }
    }

    /// A new attribute, NULL for every customer; answers the commit sequence. The name is
    /// checked by the committer before logging (`Dataset::check_new_attribute`, the one
    /// attribute-name rule).
    pub async fn add_attribute(&self, name: String, kind: NewAttribute) -> Result<u64, AppError> {
        Ok(self.commit(Mutation::AddAttribute { name, kind }).await?.sequence)
    }
}
