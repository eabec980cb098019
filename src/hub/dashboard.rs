//! The admin dashboard (PROTOCOL §4.3 and its §5 routes): staff-only live figures, user approvals,
//! order updates and the admin activity feed.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{self, ApiJson};
use super::error::HubError;
use super::outbox::Outbox;
use super::presence::scope;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Reply, Session};
use super::{Hub, notifications, streams};
use crate::layer::{ConnId, group};
use crate::protocol::Endpoint;
use crate::protocol::limits::{MAX_EMAIL, MAX_NAME, MAX_ORDER_STATUS, MAX_REASON};
use crate::protocol::{
    self, ActivityKind, Approval, DashboardRequest, DecisionStatus, PendingUser, ResumeFrom, ServerMessage, Stats,
    Unpositioned, close,
};
use crate::store::{Created, Decision, NewNotification, NewPendingUser};

/// One admin's dashboard connection.
pub struct DashboardSession {
    hub: Arc<Hub>,
    conn_id: ConnId,
    user_id: String,
    outbox: Arc<Outbox>,
    _membership: Membership,
}

/// Accepts staff only (else 4003); catches up from `from` (PROTOCOL §7); tells the other admins when
/// this is the admin's first connection.
pub async fn open(hub: Arc<Hub>, conn: Conn, from: Option<ResumeFrom>) -> Result<Accepted<DashboardSession>, Refusal> {
    if !conn.identity.is_staff {
        return Err(Refusal::new(close::FORBIDDEN, "staff only"));
    }
    let user_id = conn.identity.user_id.clone();
    let membership =
        Membership::join(&hub.registry, &hub.layer, group::ADMINS.to_owned(), conn.id, Arc::clone(&conn.outbox))
            .await?;
    let caught_up = streams::catch_up(&hub, group::ADMINS, &conn.outbox, from.as_ref())
        .await
        .map_err(|_| Refusal::new(close::INTERNAL, "store unavailable"))?;
    let first = hub.presence.join(scope::ADMINS, &user_id).await;
    let stats = match stats(&hub).await {
        Ok(stats) => stats,
        Err(_) => {
            // A refused session never reaches `on_close`: undo the join here, or the admin stays online.
            hub.presence.leave(scope::ADMINS, &user_id).await;
            return Err(Refusal::new(close::INTERNAL, "store unavailable"));
        }
    };
    if first {
        let joined = ServerMessage::AdminJoined { user_id: &user_id, admins_online: stats.admins_online };
        // Best effort: an admin who misses this still sees `admins_online` in the next stats.
        let _ = push(&hub, "admin_joined", &joined, Some(conn.id)).await;
    }
    let mut extra = Map::new();
    extra.insert("stats".to_owned(), serde_json::to_value(&stats).expect("stats serialize"));
    extra.insert("seq".to_owned(), Value::from(caught_up.seq));
    extra.insert("epoch".to_owned(), Value::String(caught_up.epoch));
    let greeting = protocol::encode(&ServerMessage::ConnectionEstablished {
        message: "Connected to admin dashboard",
        user_id: &user_id,
        extra,
    });
    let mut greetings = vec![greeting];
    match caught_up.refused {
        Some(error) => greetings.push(error.frame(None)),
        None => greetings.extend(caught_up.frames),
    }
    let outbox = Arc::clone(&conn.outbox);
    let session = DashboardSession { hub, conn_id: conn.id, user_id, outbox, _membership: membership };
    Ok(Accepted { session, conn, greetings })
}

/// Logs a push in the admins' stream (PROTOCOL §7) and publishes it to every admin connection but `skip`.
async fn push(
    hub: &Hub,
    kind: &'static str,
    message: &ServerMessage<'_>,
    skip: Option<ConnId>,
) -> Result<(), HubError> {
    streams::publish(hub, kind, group::ADMINS, skip, Unpositioned::new(message)).await.map(|_| ())
}

impl Session for DashboardSession {
    const ENDPOINT: Endpoint = Endpoint::Dashboard;

    type Request = DashboardRequest;

    async fn handle(&mut self, request: DashboardRequest) -> Result<Option<Reply>, HubError> {
        let hub = &self.hub;
        let reply = match request {
            DashboardRequest::GetStats => Reply::new(&ServerMessage::Stats { stats: &stats(hub).await? }),
            DashboardRequest::GetPendingCount => {
                Reply::new(&ServerMessage::PendingCountUpdate { count: hub.store.pending_count().await? })
            }
            // The other admins get the update as a push; this connection gets it as the reply.
            DashboardRequest::ApproveUser { user_id } => {
                let approval =
                    decide(hub, &user_id, DecisionStatus::Approved, None, &self.user_id, Some(self.conn_id)).await?;
                Reply::new(&ServerMessage::ApprovalUpdate(&approval))
            }
            DashboardRequest::RejectUser { user_id, reason } => {
                let approval =
                    decide(hub, &user_id, DecisionStatus::Rejected, reason, &self.user_id, Some(self.conn_id)).await?;
                Reply::new(&ServerMessage::ApprovalUpdate(&approval))
            }
            DashboardRequest::Resume(from) => {
                let caught_up = streams::catch_up(hub, group::ADMINS, &self.outbox, Some(&from)).await?;
                if let Some(error) = caught_up.refused {
                    return Err(error);
                }
                Reply::frames(caught_up.frames)
            }
        };
        Ok(Some(reply))
    }

    /// A refreshed token must still be staff.
    fn refresh_rights(&mut self, identity: &crate::auth::Identity) -> Result<(), HubError> {
        if !identity.is_staff {
            return Err(super::lifetime::no_longer_allowed("staff only"));
        }
        Ok(())
    }

    async fn on_close(self) {
        if self.hub.presence.leave(scope::ADMINS, &self.user_id).await {
            announce_left(&self.hub, &self.user_id, Some(self.conn_id)).await;
        }
    }
}

/// Tells every admin connection but `skip` that `user_id` closed their last dashboard connection.
pub async fn announce_left(hub: &Hub, user_id: &str, skip: Option<ConnId>) {
    let admins_online = hub.presence.online(scope::ADMINS).await;
    let left = ServerMessage::AdminLeft { user_id, admins_online };
    // Best effort, like `admin_joined`: the next stats carry `admins_online` anyway.
    let _ = push(hub, "admin_left", &left, skip).await;
}

/// The live figures; "today" is the current UTC day.
pub async fn stats(hub: &Hub) -> Result<Stats, HubError> {
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists every day in UTC")
        .and_utc()
        .timestamp_millis();
    let decisions = hub.store.decision_counts_since(midnight).await?;
    Ok(Stats {
        pending_approvals: hub.store.pending_count().await?,
        approved_today: decisions.approved,
        rejected_today: decisions.rejected,
        admins_online: hub.presence.online(scope::ADMINS).await,
        users_online: hub.presence.online(scope::HUB).await,
        connections: Endpoint::ALL.iter().map(|e| hub.metrics.connections(*e)).sum(),
    })
}

/// Pushes the current pending count to every admin.
async fn push_pending_count(hub: &Hub) -> Result<(), HubError> {
    let count = hub.store.pending_count().await?;
    push(hub, "pending_count_update", &ServerMessage::PendingCountUpdate { count }, None).await
}

/// Decides a pending user once (404 unknown, 409 decided already), tells every admin (but `skip`,
/// which gets the update as its direct reply) and stores a notification for the user.
async fn decide(
    hub: &Hub,
    user_id: &str,
    decision: DecisionStatus,
    reason: Option<String>,
    decided_by: &str,
    skip: Option<ConnId>,
) -> Result<Approval, HubError> {
    protocol::no_nul("reason", reason.as_deref().unwrap_or_default()).map_err(HubError::bad_request)?;
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON) {
        return Err(HubError::bad_request(format!("reason must be at most {MAX_REASON} characters")));
    }
    let approval = match hub.store.decide(user_id, decision, reason.as_deref(), decided_by).await? {
        Decision::Decided(approval) => approval,
        Decision::NotFound => return Err(HubError::not_found(format!("no registered user {user_id}"))),
        Decision::AlreadyDecided => return Err(HubError::conflict(format!("user {user_id} was decided already"))),
    };
    // Decided and committed: nothing after this may turn the answer into an error (a retry would get
    // 409); each failure below is logged where it happens.
    let payload = serde_json::to_value(&approval).expect("approvals serialize");
    let _ = hub.store.append_activity(ActivityKind::Approval, &payload).await.map_err(HubError::from);
    let _ = push(hub, "approval_update", &ServerMessage::ApprovalUpdate(&approval), skip).await;
    let _ = push_pending_count(hub).await;
    let (title, message) = match decision {
        DecisionStatus::Approved => ("Account approved", "Your account has been approved.".to_owned()),
        DecisionStatus::Rejected => (
            "Account rejected",
            match &approval.reason {
                Some(reason) => format!("Your account has been rejected: {reason}"),
                None => "Your account has been rejected.".to_owned(),
            },
        ),
    };
    let notification = NewNotification {
        user_id: user_id.to_owned(),
        title: title.to_owned(),
        message,
        kind: "approval".to_owned(),
        data: json!({"status": approval.status, "reason": approval.reason, "decided_by": approval.decided_by}),
        link: None,
    };
    let _ = notifications::publish(hub, vec![notification]).await;
    Ok(approval)
}

/// The dashboard's HTTP routes.
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/v1/admin-dashboard/users/", post(register))
        .route("/api/v1/admin-dashboard/dashboard/", get(dashboard))
        .route("/api/v1/admin-dashboard/approvals/pending/", get(pending))
        .route("/api/v1/admin-dashboard/approvals/recent/", get(recent))
        .route("/api/v1/admin-dashboard/users/{user_id}/approve/", post(approve))
        .route("/api/v1/admin-dashboard/users/{user_id}/reject/", post(reject))
        .route("/api/v1/admin-dashboard/orders/{order_id}/", post(order_update))
        .route("/api/v1/admin-dashboard/notifications/", get(activity))
}

#[derive(Debug, Deserialize)]
struct Register {
    #[serde(deserialize_with = "protocol::de_user_id")]
    user_id: String,
    email: Option<String>,
    name: Option<String>,
}

async fn register(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Register>,
) -> Result<Response, HubError> {
    api::backend(&hub, &headers)?;
    protocol::no_nul("email", body.email.as_deref().unwrap_or_default()).map_err(HubError::bad_request)?;
    protocol::no_nul("name", body.name.as_deref().unwrap_or_default()).map_err(HubError::bad_request)?;
    if body.email.as_ref().is_some_and(|e| e.len() > MAX_EMAIL) {
        return Err(HubError::bad_request(format!("email must be at most {MAX_EMAIL} characters")));
    }
    if body.name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME) {
        return Err(HubError::bad_request(format!("name must be at most {MAX_NAME} characters")));
    }
    let new = NewPendingUser { user_id: body.user_id, email: body.email, name: body.name };
    let user: PendingUser = match hub.store.register_pending_user(&new).await? {
        Created::Created(user) => user,
        Created::Conflict => return Err(HubError::conflict(format!("user {} is pending already", new.user_id))),
    };
    let payload = serde_json::to_value(&user).expect("pending users serialize");
    hub.store.append_activity(ActivityKind::NewUser, &payload).await?;
    push(&hub, "new_user", &ServerMessage::NewUser { user: &user }, None).await?;
    push_pending_count(&hub).await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

async fn dashboard(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Result<axum::Json<Stats>, HubError> {
    api::staff(&hub, &headers)?;
    Ok(axum::Json(stats(&hub).await?))
}

/// `?limit=` of the lists, 1..=200.
#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<u32>,
}

impl ListQuery {
    fn limit(query: Result<Query<Self>, axum::extract::rejection::QueryRejection>) -> Result<u32, HubError> {
        let Query(query) = query.map_err(|e| HubError::bad_request(e.body_text()))?;
        protocol::page_limit(query.limit).map_err(HubError::bad_request)
    }
}

type ListParams = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

async fn pending(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: ListParams,
) -> Result<axum::Json<Value>, HubError> {
    api::staff(&hub, &headers)?;
    let users = hub.store.pending_users(ListQuery::limit(query)?).await?;
    let count = hub.store.pending_count().await?;
    Ok(axum::Json(json!({"users": users, "count": count})))
}

async fn recent(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: ListParams,
) -> Result<axum::Json<Value>, HubError> {
    api::staff(&hub, &headers)?;
    let approvals = hub.store.recent_approvals(ListQuery::limit(query)?).await?;
    Ok(axum::Json(json!({"approvals": approvals})))
}

async fn activity(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: ListParams,
) -> Result<axum::Json<Value>, HubError> {
    api::staff(&hub, &headers)?;
    let entries = hub.store.list_activity(ListQuery::limit(query)?).await?;
    Ok(axum::Json(json!({"notifications": entries})))
}

async fn approve(
    State(hub): State<Arc<Hub>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Approval>, HubError> {
    let admin = api::staff(&hub, &headers)?;
    Ok(axum::Json(decide(&hub, &user_id, DecisionStatus::Approved, None, &admin.user_id, None).await?))
}

#[derive(Debug, Default, Deserialize)]
struct Reject {
    reason: Option<String>,
}

async fn reject(
    State(hub): State<Arc<Hub>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<Approval>, HubError> {
    let admin = api::staff(&hub, &headers)?;
    // The body is optional here: no body means no reason.
    let reason = if body.is_empty() {
        None
    } else {
        let body: Reject = serde_json::from_slice(&body).map_err(|e| HubError::bad_request(e.to_string()))?;
        body.reason
    };
    Ok(axum::Json(decide(&hub, &user_id, DecisionStatus::Rejected, reason, &admin.user_id, None).await?))
}

#[derive(Debug, Deserialize)]
struct OrderUpdate {
    status: String,
    data: Option<Value>,
}

async fn order_update(
    State(hub): State<Arc<Hub>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrderUpdate>,
) -> Result<Response, HubError> {
    api::backend(&hub, &headers)?;
    if !protocol::is_valid_scope_id(&order_id) {
        return Err(HubError::bad_request("order id must match [A-Za-z0-9_.-]{1,64}"));
    }
    if body.status.is_empty() || body.status.len() > MAX_ORDER_STATUS {
        return Err(HubError::bad_request(format!("status must be 1..{MAX_ORDER_STATUS} characters")));
    }
    let data = match body.data {
        None | Some(Value::Null) => json!({}),
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err(HubError::bad_request("data must be a JSON object")),
    };
    let payload = json!({"order_id": order_id, "status": body.status, "data": data});
    hub.store.append_activity(ActivityKind::OrderUpdate, &payload).await?;
    let update = ServerMessage::OrderUpdate { order_id: &order_id, status: &body.status, data: &data };
    push(&hub, "order_update", &update, None).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(payload)).into_response())
}
