//! `segd.v1.CustomerService`: translation to and from the application's write and
//! customer use cases. `StreamUpserts` pipelines: each request is submitted as it
//! arrives and answered in order as it commits.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::app::{App, AppError, PendingUpsert, Upserted};
use crate::metrics::Rpc;
use crate::store::mutate::CustomerUpdate;

use super::convert;
use super::pb::{self, customer_service_server::CustomerService};
use super::service::Ctx;
use super::status::status_of;

#[derive(Clone)]
pub struct CustomerSvc(pub Arc<Ctx>);

/// Batches of one StreamUpserts call submitted but not yet answered.
const STREAM_IN_FLIGHT: usize = 64;

fn batch_of(req: pb::UpsertCustomersRequest) -> Result<Vec<CustomerUpdate>, AppError> {
    let pb::UpsertCustomersRequest { customers } = req;
    customers.into_iter().map(CustomerUpdate::try_from).collect()
}

fn upserted(u: Upserted) -> pb::UpsertCustomersResponse {
    let Upserted { sequence, applied } = u;
    pb::UpsertCustomersResponse { sequence, applied }
}

fn submit(app: &App, req: pb::UpsertCustomersRequest) -> Result<PendingUpsert, AppError> {
    app.submit_upsert(batch_of(req)?)
}

/// One StreamUpserts batch on its way: submitted (answer pending) or already failed.
enum Pending {
    Submitted(Instant, PendingUpsert),
    Failed(Instant, AppError),
    /// The client's request stream broke: nothing more to answer.
    Broken,
}

#[tonic::async_trait]
impl CustomerService for CustomerSvc {
    async fn upsert_customers(
        &self,
        req: Request<pb::UpsertCustomersRequest>,
    ) -> Result<Response<pb::UpsertCustomersResponse>, Status> {
        let ctx = &self.0;
        ctx.call(Rpc::UpsertCustomers, async {
            Ok(upserted(ctx.app.upsert(batch_of(req.into_inner())?).await?))
        })
        .await
    }

    type StreamUpsertsStream = ReceiverStream<Result<pb::UpsertCustomersResponse, Status>>;

    /// The commit queue keeps submission order, so commit order is request order. The
    /// first failure is the stream's final status; batches after it are not answered.
    async fn stream_upserts(
        &self,
        req: Request<Streaming<pb::UpsertCustomersRequest>>,
    ) -> Result<Response<Self::StreamUpsertsStream>, Status> {
        let mut inbound = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let (pend_tx, mut pend_rx) = mpsc::channel::<Pending>(STREAM_IN_FLIGHT);
        let ctx = self.0.clone();
        tokio::spawn(async move {
            let mut closing = ctx.app.closing();
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = closing.wait() => {
                        let _ = pend_tx.send(Pending::Failed(Instant::now(), AppError::ShuttingDown)).await;
                        return;
                    }
                    _ = pend_tx.closed() => return,
                };
                let p = match msg {
                    Ok(Some(req)) => {
                        let t = Instant::now();
                        match submit(&ctx.app, req) {
                            Ok(pending) => Pending::Submitted(t, pending),
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
        let ctx = self.0.clone();
        tokio::spawn(async move {
            let span = tracing::info_span!("rpc", rpc = Rpc::StreamUpserts.name());
            while let Some(p) = pend_rx.recv().await {
                let (t, r) = match p {
                    Pending::Submitted(t, pending) => {
                        (t, pending.wait().await.map(upserted).map_err(status_of))
                    }
                    Pending::Failed(t, e) => (t, Err(status_of(e))),
                    Pending::Broken => return,
                };
                ctx.record(Rpc::StreamUpserts, &span, t, r.as_ref().err());
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
        let ctx = &self.0;
        ctx.call(Rpc::DeleteCustomers, async {
            let d = ctx.app.delete_customers(customer_ids).await?;
            Ok(pb::DeleteCustomersResponse { sequence: d.sequence, deleted: d.deleted })
        })
        .await
    }

    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let min = super::replica::min_sequence(&req);
        let pb::GetCustomerRequest { customer_id } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::GetCustomer, async {
            super::replica::at_least(&ctx.app, min).await?;
            let c = ctx.app.get_customer(customer_id)?;
            Ok(convert::customer_pb(c.customer_id, c.attributes))
        })
        .await
    }

    async fn add_attribute(
        &self,
        req: Request<pb::AddAttributeRequest>,
    ) -> Result<Response<pb::AddAttributeResponse>, Status> {
        let pb::AddAttributeRequest { name, r#type } = req.into_inner();
        let ctx = &self.0;
        ctx.call(Rpc::AddAttribute, async {
            let kind = convert::attribute_type(r#type)?;
            Ok(pb::AddAttributeResponse { sequence: ctx.app.add_attribute(name, kind).await? })
        })
        .await
    }
}
