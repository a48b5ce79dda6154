//! Membership questions asked one after another on one stream ([`MemberSession`]): the
//! use case behind `StreamIsMember`. Each question is answered exactly as
//! [`App::is_member`] answers it, against the state as it is when it is asked, and a
//! question that fails fails alone: the session goes on.
//!
//! A question may leave its segment out: it then asks about the segment the last question
//! that named one named, so a hot-path client sends its segment once. The session keeps
//! that segment's compiled plan while the state's version is the one it was compiled at,
//! so such a question skips the plan cache's lookup (hashing the text, a shared lock).

use std::sync::Arc;

use crate::plan_cache::Cached;

use super::reads::{Membership, SegmentRef};
use super::{guarded, App, AppError};

/// One stream's questions. Not shared between streams: each has its own current segment.
pub struct MemberSession {
    app: App,
    /// The segment the last question that named one named.
    segment: Option<SegmentRef>,
    /// `segment`'s compiled plan (a `where` text or a tree) at the version it was compiled
    /// at; a saved segment is looked up by id each time (one map lookup).
    plan: Option<Arc<Cached>>,
}

impl App {
    /// A session of membership questions (one per stream).
    pub fn member_session(&self) -> MemberSession {
        MemberSession { app: self.clone(), segment: None, plan: None }
    }
}

impl MemberSession {
    /// Whether `customer_id` is in `segment`, or, when `segment` is `None`, in the segment
    /// the last question that named one named (also when that question failed, so every
    /// question after a bad segment fails the same way until one names another).
    pub fn ask(&mut self, customer_id: u64, segment: Option<SegmentRef>) -> Result<Membership, AppError> {
        if let Some(s) = segment {
            self.segment = Some(s);
            self.plan = None;
        }
        let Some(segment) = &self.segment else {
            return Err(AppError::Invalid {
                field: "segment",
                msg: "the first question of a stream must name a segment: set one of 'where', \
                      'predicate' or 'segment_id' (later questions may leave it out to reuse it)"
                    .into(),
            });
        };
        let app = &self.app;
        let plan = &mut self.plan;
        guarded(|| {
            let eng = app.read();
            if let Some(c) = plan.as_ref().filter(|c| c.version == eng.sequence()) {
                return Ok(app.membership(&eng, customer_id, |row| {
                    crate::query::eval::matches_row(eng.data(), &c.plan.root, row)
                }));
            }
            *plan = None;
            app.check_segment(segment)?;
            let target = app.target(&eng, segment)?;
            let m = app.membership(&eng, customer_id, |row| target.is_member(&eng, row));
            *plan = target.plan();
            Ok(m)
        })
    }
}
