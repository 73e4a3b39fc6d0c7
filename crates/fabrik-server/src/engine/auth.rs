//! Authorisation of account and token administration: who may see a job, create accounts,
//! and create, list or revoke tokens (admins everything; managers within their subtree; users
//! only their own project's jobs).

use super::requests::{ApiErr, NewToken, MAX_AHEAD_S};
use super::views::AccountView;
use super::{tree_from, Engine};
use crate::store::{Identity, JobRecord, Role, TokenInfo};

impl Engine {
    pub(super) fn visible(&self, who: &Identity, id: i64) -> Result<&JobRecord, ApiErr> {
        match self.jobs.get(&id) {
            Some(j) if who.covers(&j.account) => Ok(j),
            _ => Err(ApiErr::NotFound(format!("job {id} not found"))),
        }
    }

    pub(super) fn add_account(&mut self, who: &Identity, path: &str, shares: f64) -> Result<AccountView, ApiErr> {
        if who.role != Role::Admin {
            return Err(ApiErr::Forbidden("only admins create accounts".into()));
        }
        if !(shares.is_finite() && shares > 0.0) {
            return Err(ApiErr::BadRequest("shares: must be a positive number".into()));
        }
        let mut accounts = self.store.accounts().map_err(|e| ApiErr::Internal(e.to_string()))?;
        match accounts.iter_mut().find(|(p, _)| p == path) {
            Some(a) => a.1 = shares,
            None => accounts.push((path.trim_matches('/').to_string(), shares)),
        }
        let tree = tree_from(&accounts, &self.facility.tenants).map_err(ApiErr::BadRequest)?;
        self.sched.update_tenants(tree.clone()).map_err(|e| ApiErr::BadRequest(e.to_string()))?;
        self.store.add_account(path.trim_matches('/'), shares).map_err(|e| ApiErr::Internal(e.to_string()))?;
        self.facility.tenants = tree;
        self.accounts(who)
            .into_iter()
            .find(|a| a.account == path.trim_matches('/'))
            .ok_or_else(|| ApiErr::Internal("account vanished".into()))
    }

    pub(super) fn create_token(&mut self, who: &Identity, t: NewToken) -> Result<String, ApiErr> {
        let NewToken { name, account, role, expires_in } = t;
        if name.trim().is_empty() || name.len() > 200 {
            return Err(ApiErr::BadRequest("name: must be 1 to 200 characters".into()));
        }
        if expires_in.is_some_and(|e| e == 0 || e > MAX_AHEAD_S) {
            return Err(ApiErr::BadRequest(format!("expires_in: must be between 1 s and {MAX_AHEAD_S} s")));
        }
        let allowed = match who.role {
            Role::Admin => true,
            Role::Manager => role != Role::Admin && account.as_ref().is_some_and(|a| who.covers(a)),
            Role::User => false,
        };
        if !allowed {
            return Err(ApiErr::Forbidden(format!("token '{}' may not create this token", who.name)));
        }
        match (&account, role) {
            (None, Role::Admin) => {}
            (None, _) => return Err(ApiErr::BadRequest("account: required for user and manager tokens".into())),
            (Some(a), _) => {
                let id = self.facility.tenants.iter().find(|(_, x)| &x.path == a).map(|(id, _)| id);
                match id {
                    None => return Err(ApiErr::BadRequest(format!("account: unknown account '{a}'"))),
                    Some(id) if role == Role::User && !self.facility.tenants.get(id).is_leaf() => {
                        return Err(ApiErr::BadRequest(format!(
                            "account: user tokens bind to a project; '{a}' has sub-accounts"
                        )))
                    }
                    _ => {}
                }
            }
        }
        let now = self.clock.now().0;
        self.store
            .create_token_expiring(&name, account.as_deref(), role, now, expires_in.map(|e| now.saturating_add(e)))
            .map_err(|e| ApiErr::Internal(e.to_string()))
    }

    /// Tokens an identity may manage: admins all, managers those bound inside their subtree.
    pub(super) fn manages(who: &Identity, t: &TokenInfo) -> bool {
        match who.role {
            Role::Admin => true,
            Role::Manager => t.account.as_ref().is_some_and(|a| who.covers(a)),
            Role::User => false,
        }
    }

    pub(super) fn tokens(&self, who: &Identity) -> Result<Vec<TokenInfo>, ApiErr> {
        if who.role == Role::User {
            return Err(ApiErr::Forbidden("user tokens cannot list tokens".into()));
        }
        let all = self.store.tokens().map_err(|e| ApiErr::Internal(e.to_string()))?;
        Ok(all.into_iter().filter(|t| Self::manages(who, t)).collect())
    }

    pub(super) fn revoke_token(&mut self, who: &Identity, id: i64) -> Result<TokenInfo, ApiErr> {
        let all = self.store.tokens().map_err(|e| ApiErr::Internal(e.to_string()))?;
        let mut t = all
            .into_iter()
            .find(|t| t.id == id && Self::manages(who, t))
            .ok_or_else(|| ApiErr::NotFound(format!("token {id} not found")))?;
        self.store.revoke_token(id).map_err(|e| ApiErr::Internal(format!("store: {e}")))?;
        t.revoked = true;
        tracing::info!(token = id, by = %who.name, "token revoked");
        Ok(t)
    }
}
