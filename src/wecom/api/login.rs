//! `auth/getuserinfo`: who signed in, from the one-time `code` that WeCom's OAuth2 web login
//! (inside the WeCom client) or its QR-code web login hands back to the redirect URI.
//!
//! The code is single-use and expires after five minutes (WeCom answers 40029 then); it is
//! never logged (transport errors carry no URL).

use super::*;

/// Who a sign-in code belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginIdentity {
    /// A member of the corp: their user id (成员 UserID).
    Member {
        /// The member's user id.
        user_id: String,
    },
    /// Someone who is not a member (WeCom answers an `openid` instead of a `userid`).
    NotMember {
        /// WeCom's id of the non-member, unique within the corp.
        open_id: String,
    },
}

impl WeComApi {
    /// `auth/getuserinfo`: exchanges a sign-in `code` for the identity of whoever signed in,
    /// with `c`'s access token (the app whose login page issued the code). A used, expired
    /// or foreign code is [`ApiError::Permanent`] with errcode 40029.
    pub async fn login_identity(
        &self,
        c: &Credentials,
        code: &str,
    ) -> Result<LoginIdentity, ApiError> {
        let api = names::AUTH_GETUSERINFO;
        let v = self
            .inner
            .call(
                self.wait_out_rate_limits,
                api,
                c,
                Method::Get,
                "auth/getuserinfo",
                &[("code", code)],
                None,
            )
            .await?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        // Older answers spelled it `UserId` / `OpenId`.
        match (
            text("userid").or_else(|| text("UserId")),
            text("openid").or_else(|| text("OpenId")),
        ) {
            (Some(user_id), _) => Ok(LoginIdentity::Member { user_id }),
            (None, Some(open_id)) => Ok(LoginIdentity::NotMember { open_id }),
            (None, None) => Err(ApiError::BadResponse {
                api,
                detail: "neither `userid` nor `openid` in the answer".to_owned(),
            }),
        }
    }
}
