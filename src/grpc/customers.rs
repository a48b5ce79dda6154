//! `segd.v1.CustomerService`: writes go through the database's group commit and are
//! answered once durable and visible; reads take the read lock briefly.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::db::{Committed, DbError};
use crate::engine::{Mutation, Outcome};
use crate::store::mutate::MutationError;

use super::convert;
use super::pb::{self, customer_service_server::CustomerService};
use super::service::{guarded, rpc, until_closing, State};
use super::status::{status_of, ServiceError};

#[derive(Clone)]
pub struct CustomerSvc(pub Arc<State>);

/// Batches of one StreamUpserts call submitted but not yet answered.
const STREAM_IN_FLIGHT: usize = 64;

impl State {
    /// A checked upsert batch (size limit and value kinds; the schema is checked by the
    /// committer against the state it applies to).
    fn upsert_mutation(&self, req: pb::UpsertCustomersRequest) -> Result<Mutation, ServiceError> {
        let pb::UpsertCustomersRequest { customers } = req;
        self.batch_limit("customers length", customers.len())?;
        let batch = customers.into_iter().map(convert::customer_update).collect::<Result<Vec<_>, _>>()?;
        Ok(Mutation::Upsert(batch))
    }
}

fn upserted(c: Committed) -> Result<pb::UpsertCustomersResponse, ServiceError> {
    match c.outcome {
        Outcome::Upserted { applied } => Ok(pb::UpsertCustomersResponse { sequence: c.sequence, applied }),
        o => Err(ServiceError::Internal(format!("unexpected outcome {o:?}"))),
    }
}

/// One StreamUpserts batch on its way: submitted (answer pending) or already failed.
enum Pending {
    Submitted(Instant, oneshot::Receiver<Result<Committed, DbError>>),
    Failed(Instant, ServiceError),
    /// The client's request stream broke: nothing more to answer.
    Broken,
}

#[tonic::async_trait]
impl CustomerService for CustomerSvc {
    async fn upsert_customers(
        &self,
        req: Request<pb::UpsertCustomersRequest>,
    ) -> Result<Response<pb::UpsertCustomersResponse>, Status> {
        let st = &self.0;
        st.call(rpc::UPSERT, async {
            let m = guarded(|| st.upsert_mutation(req.into_inner()))?;
            upserted(st.commit(m).await?)
        })
        .await
    }

    type StreamUpsertsStream = ReceiverStream<Result<pb::UpsertCustomersResponse, Status>>;

    /// Pipelined: each request is submitted as it arrives (the commit queue keeps their
    /// order, so commit order is request order) and answered in order as it commits. The
    /// first failure is the stream's final status; batches after it are not answered.
    async fn stream_upserts(
        &self,
        req: Request<Streaming<pb::UpsertCustomersRequest>>,
    ) -> Result<Response<Self::StreamUpsertsStream>, Status> {
        let mut inbound = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let (pend_tx, mut pend_rx) = mpsc::channel::<Pending>(STREAM_IN_FLIGHT);
        let st = self.0.clone();
        tokio::spawn(async move {
            let mut closing = st.closing.subscribe();
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = until_closing(&mut closing) => {
                        let _ = pend_tx.send(Pending::Failed(Instant::now(), ServiceError::ShuttingDown)).await;
                        return;
                    }
                    _ = pend_tx.closed() => return,
                };
                let p = match msg {
                    Ok(Some(req)) => {
                        let t = Instant::now();
                        match guarded(|| st.upsert_mutation(req)).and_then(|m| st.submit(m)) {
                            Ok(rx) => Pending::Submitted(t, rx),
                            Err(e) => Pending::Failed(t, e),
                        }
                    }
                    Ok(None) => return,
                    Err(_) => Pending::Broken,
                };
                let last = !matches!(p, Pending::Submitted(..));
                if pend_tx.send(p).await.is_err() || last {
                    return;
                }
            }
        });
        let st = self.0.clone();
        tokio::spawn(async move {
            let span = tracing::info_span!("rpc", rpc = "StreamUpserts");
            while let Some(p) = pend_rx.recv().await {
                let (t, r) = match p {
                    Pending::Submitted(t, rx) => {
                        let r = match rx.await {
                            Ok(Ok(c)) => upserted(c),
                            Ok(Err(e)) => Err(e.into()),
                            Err(_) => Err(DbError::Closed.into()),
                        };
                        (t, r.map_err(status_of))
                    }
                    Pending::Failed(t, e) => (t, Err(status_of(e))),
                    Pending::Broken => return,
                };
                st.record(rpc::STREAM_UPSERTS, &span, t, r.as_ref().err());
                let failed = r.is_err();
                if out_tx.send(r).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn delete_customers(
        &self,
        req: Request<pb::DeleteCustomersRequest>,
    ) -> Result<Response<pb::DeleteCustomersResponse>, Status> {
        let pb::DeleteCustomersRequest { customer_ids } = req.into_inner();
        let st = &self.0;
        st.call(rpc::DELETE_CUSTOMERS, async {
            st.batch_limit("customer_ids length", customer_ids.len())?;
            let c = st.commit(Mutation::Delete(customer_ids)).await?;
            match c.outcome {
                Outcome::Deleted { deleted } => {
                    Ok(pb::DeleteCustomersResponse { sequence: c.sequence, deleted })
                }
                o => Err(ServiceError::Internal(format!("unexpected outcome {o:?}"))),
            }
        })
        .await
    }

    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pb::GetCustomerRequest { customer_id } = req.into_inner();
        let st = &self.0;
        st.call(rpc::GET_CUSTOMER, async {
            guarded(|| {
                let eng = st.read();
                let id_col = &eng.data().id_column().name;
                let mut attrs =
                    eng.data().customer(customer_id).ok_or(ServiceError::UnknownCustomer(customer_id))?;
                attrs.retain(|(name, _)| name != id_col);
                Ok(convert::customer_pb(customer_id, attrs))
            })
        })
        .await
    }

    async fn add_attribute(
        &self,
        req: Request<pb::AddAttributeRequest>,
    ) -> Result<Response<pb::AddAttributeResponse>, Status> {
        let pb::AddAttributeRequest { name, r#type } = req.into_inner();
        let st = &self.0;
        st.call(rpc::ADD_ATTRIBUTE, async {
            let kind = convert::attribute_type(r#type)?;
            // Checked here too: the committer's check does not look at the name, and a bad
            // one would be logged before failing to apply.
            let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(DbError::Rejected(MutationError::BadAttributeName(name).into()).into());
            }
            let c = st.commit(Mutation::AddAttribute { name, kind }).await?;
            Ok(pb::AddAttributeResponse { sequence: c.sequence })
        })
        .await
    }
}
