//! Amazon Cognito as the directory: password sign-in and refresh through `InitiateAuth`, and the
//! standard `picture` attribute kept with the Admin* calls. Tokens are verified elsewhere, by the
//! same `JwksVerifier` that checks the embedded issuer's.

use app::domain::{PhotoKey, UserId};
use app::service::ports::{
    BoxError, Directory, NewUser, Part, PortError, PortResult, RefreshOutcome, SignInOutcome,
    SignedIn, Tokens,
};
use app::service::ADMIN;
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::error::SdkError;
use aws_sdk_cognitoidentityprovider::operation::initiate_auth::InitiateAuthError;
use aws_sdk_cognitoidentityprovider::operation::revoke_token::RevokeTokenError;
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, AuthFlowType, AuthenticationResultType,
};
use aws_sdk_cognitoidentityprovider::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// The Cognito group whose members get the Admin role; everyone else is a Member.
const ADMIN_GROUP: &str = "Admin";
const PICTURE: &str = "picture";

fn directory_error(e: impl Into<BoxError>) -> PortError {
    PortError::new(Part::Directory, e)
}

pub struct CognitoDirectory {
    client: Client,
    user_pool_id: String,
    client_id: String,
}

impl CognitoDirectory {
    pub fn new(client: Client, user_pool_id: String, client_id: String) -> Self {
        Self {
            client,
            user_pool_id,
            client_id,
        }
    }

    /// Runs one `InitiateAuth` flow.
    async fn initiate(
        &self,
        flow: AuthFlowType,
        parameters: &[(&str, &str)],
    ) -> PortResult<Answer> {
        let mut request = self
            .client
            .initiate_auth()
            .auth_flow(flow)
            .client_id(&self.client_id);
        for (name, value) in parameters {
            request = request.auth_parameters(*name, *value);
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => match answer_to(&e) {
                Some(answer) => {
                    tracing::debug!(error = %e.into_service_error(), "Cognito refused a sign-in");
                    return Ok(answer);
                }
                None => return Err(directory_error(e)),
            },
        };
        if let Some(challenge) = output.challenge_name() {
            // NEW_PASSWORD_REQUIRED, MFA...: flows this app does not offer. The account has to
            // be completed in Cognito's hosted UI or by an administrator first.
            tracing::warn!(%challenge, "sign-in needs a challenge the app does not support");
            return Ok(Answer::Challenged);
        }
        output
            .authentication_result
            .map(Answer::Tokens)
            .ok_or_else(|| directory_error("Cognito returned neither tokens nor a challenge"))
    }
}

/// What Cognito said to an `InitiateAuth`.
#[derive(Debug, PartialEq)]
enum Answer {
    Tokens(AuthenticationResultType),
    /// The credentials are refused: wrong password, no such user (pools that hide user
    /// existence say "not authorized" for both), unconfirmed, a reset required, or a revoked
    /// refresh token.
    Refused,
    /// Right credentials, but another step is due first.
    Challenged,
    /// Cognito is limiting this app's requests (a quota, not the user's fault).
    TooManyRequests,
    /// Cognito's own lockout after failed passwords: a `NotAuthorizedException` whose
    /// message is "Password attempts exceeded".
    LockedOut,
}

/// The answers that are Cognito saying no, rather than failing; `None` for a real failure.
/// Generic over the raw response so that tests can build the SDK's errors without one.
fn answer_to<R>(e: &SdkError<InitiateAuthError, R>) -> Option<Answer> {
    let e = e.as_service_error()?;
    match e {
        InitiateAuthError::TooManyRequestsException(_) => Some(Answer::TooManyRequests),
        InitiateAuthError::NotAuthorizedException(refusal)
            if refusal
                .message()
                .is_some_and(|m| m.to_ascii_lowercase().contains("attempts exceeded")) =>
        {
            Some(Answer::LockedOut)
        }
        _ if e.is_not_authorized_exception()
            || e.is_user_not_found_exception()
            || e.is_user_not_confirmed_exception()
            || e.is_password_reset_required_exception() =>
        {
            Some(Answer::Refused)
        }
        _ => None,
    }
}

/// Revocation errors that mean there is nothing (more) to revoke: a token that is not a
/// refresh token of this client. Anything else is a failure.
fn nothing_to_revoke<R>(e: &SdkError<RevokeTokenError, R>) -> bool {
    e.as_service_error().is_some_and(|e| {
        e.is_unsupported_token_type_exception()
            || e.is_unauthorized_exception()
            || e.is_invalid_parameter_exception()
    })
}

fn tokens(result: &AuthenticationResultType) -> PortResult<Tokens> {
    let missing = |what: &str| directory_error(format!("Cognito returned no {what}"));
    Ok(Tokens {
        access_token: result
            .access_token()
            .ok_or_else(|| missing("access token"))?
            .to_owned(),
        id_token: result
            .id_token()
            .ok_or_else(|| missing("id token"))?
            .to_owned(),
        refresh_token: result.refresh_token().map(str::to_owned),
        expires_in: u64::try_from(result.expires_in()).unwrap_or(0),
    })
}

/// The claims of an id token that describe the user.
#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
}

/// Reads the user from the id token Cognito just returned. The signature is not checked here:
/// the token came straight from Cognito over TLS in answer to our own call, which OpenID
/// Connect accepts in place of the signature (Core 1.0, 3.1.3.7). Every token a *client*
/// presents is verified in full.
fn user_from_id_token(id_token: &str) -> PortResult<NewUser> {
    let payload = id_token
        .split('.')
        .nth(1)
        .ok_or_else(|| directory_error("the id token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(directory_error)?;
    let claims: IdClaims = serde_json::from_slice(&bytes).map_err(directory_error)?;
    let role = if claims.groups.iter().any(|g| g == ADMIN_GROUP) {
        ADMIN
    } else {
        "Member"
    };
    Ok(NewUser {
        id: UserId::parse(claims.sub).map_err(directory_error)?,
        // A pool without names still shows something sensible.
        name: claims.name.unwrap_or_else(|| claims.email.clone()),
        email: claims.email,
        phone: claims.phone_number,
        role: role.to_owned(),
    })
}

#[async_trait]
impl Directory for CognitoDirectory {
    async fn sign_in(&self, email: &str, password: &str) -> PortResult<SignInOutcome> {
        let parameters = [("USERNAME", email), ("PASSWORD", password)];
        let result = match self
            .initiate(AuthFlowType::UserPasswordAuth, &parameters)
            .await?
        {
            Answer::Tokens(result) => result,
            Answer::Refused => return Ok(SignInOutcome::Refused),
            Answer::Challenged => return Ok(SignInOutcome::NeedsAnotherStep),
            Answer::TooManyRequests => return Ok(SignInOutcome::TooManyRequests),
            Answer::LockedOut => return Ok(SignInOutcome::LockedOut),
        };
        let tokens = tokens(&result)?;
        let user = user_from_id_token(&tokens.id_token)?;
        Ok(SignInOutcome::SignedIn(SignedIn { tokens, user }))
    }

    async fn refresh(&self, refresh_token: &str) -> PortResult<RefreshOutcome> {
        let parameters = [("REFRESH_TOKEN", refresh_token)];
        match self
            .initiate(AuthFlowType::RefreshTokenAuth, &parameters)
            .await?
        {
            Answer::Tokens(result) => tokens(&result).map(RefreshOutcome::Refreshed),
            Answer::TooManyRequests => Ok(RefreshOutcome::TooManyRequests),
            Answer::Refused | Answer::Challenged | Answer::LockedOut => Ok(RefreshOutcome::Refused),
        }
    }

    async fn revoke(&self, refresh_token: &str) -> PortResult<()> {
        match self
            .client
            .revoke_token()
            .token(refresh_token)
            .client_id(&self.client_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if nothing_to_revoke(&e) => {
                tracing::debug!(error = %e.into_service_error(), "nothing to revoke");
                Ok(())
            }
            Err(e) => Err(directory_error(e)),
        }
    }

    // The user is named by `sub`: in a pool that signs in by email, the username *is* the sub.

    async fn set_picture(&self, id: &UserId, key: &PhotoKey) -> PortResult<()> {
        let attribute = AttributeType::builder()
            .name(PICTURE)
            .value(key.as_str())
            .build()
            .map_err(directory_error)?;
        self.client
            .admin_update_user_attributes()
            .user_pool_id(&self.user_pool_id)
            .username(id.as_str())
            .user_attributes(attribute)
            .send()
            .await
            .map_err(directory_error)?;
        Ok(())
    }

    async fn remove_picture(&self, id: &UserId) -> PortResult<()> {
        self.client
            .admin_delete_user_attributes()
            .user_pool_id(&self.user_pool_id)
            .username(id.as_str())
            .user_attribute_names(PICTURE)
            .send()
            .await
            .map_err(directory_error)?;
        Ok(())
    }

    async fn picture(&self, id: &UserId) -> PortResult<Option<String>> {
        let user = self
            .client
            .admin_get_user()
            .user_pool_id(&self.user_pool_id)
            .username(id.as_str())
            .send()
            .await
            .map_err(directory_error)?;
        Ok(user
            .user_attributes()
            .iter()
            .find(|a| a.name() == PICTURE)
            .and_then(|a| a.value().map(str::to_owned)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_token(claims: serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    use aws_sdk_cognitoidentityprovider::types::error::{
        NotAuthorizedException, TooManyRequestsException, UnsupportedTokenTypeException,
        UserNotFoundException,
    };

    fn answer(error: InitiateAuthError) -> Option<Answer> {
        answer_to(&SdkError::service_error(error, ()))
    }

    #[test]
    fn cognito_throttling_and_lockout_are_answers_not_failures() {
        let not_authorized = |message: &str| {
            InitiateAuthError::NotAuthorizedException(
                NotAuthorizedException::builder().message(message).build(),
            )
        };
        let rate = TooManyRequestsException::builder()
            .message("Rate exceeded")
            .build();
        for (error, expected) in [
            (
                InitiateAuthError::TooManyRequestsException(rate),
                Answer::TooManyRequests,
            ),
            (
                not_authorized("Password attempts exceeded"),
                Answer::LockedOut,
            ),
            (
                not_authorized("Incorrect username or password."),
                Answer::Refused,
            ),
            (
                InitiateAuthError::UserNotFoundException(UserNotFoundException::builder().build()),
                Answer::Refused,
            ),
        ] {
            assert_eq!(answer(error), Some(expected));
        }
        // A failure that is not an answer stays a failure (503, logged).
        let timeout: SdkError<InitiateAuthError, ()> = SdkError::timeout_error("no answer in time");
        assert!(answer_to(&timeout).is_none());
    }

    #[test]
    fn revoking_what_is_not_our_refresh_token_is_not_a_failure() {
        let not_ours = RevokeTokenError::UnsupportedTokenTypeException(
            UnsupportedTokenTypeException::builder().build(),
        );
        assert!(nothing_to_revoke(&SdkError::service_error(not_ours, ())));
        let busy =
            RevokeTokenError::TooManyRequestsException(TooManyRequestsException::builder().build());
        assert!(!nothing_to_revoke(&SdkError::service_error(busy, ())));
    }

    #[test]
    fn the_admin_group_makes_an_admin() {
        let user = user_from_id_token(&id_token(serde_json::json!({
            "sub": "4f1c", "email": "a@example.com", "name": "A",
            "phone_number": "+1555", "cognito:groups": ["Admin"],
        })))
        .unwrap();
        assert_eq!(user.role, "Admin");
        assert_eq!(user.phone.as_deref(), Some("+1555"));
    }

    #[test]
    fn a_user_without_name_or_groups_is_a_member_named_by_email() {
        let user = user_from_id_token(&id_token(serde_json::json!({
            "sub": "4f1c", "email": "a@example.com",
        })))
        .unwrap();
        assert_eq!(
            (user.role.as_str(), user.name.as_str()),
            ("Member", "a@example.com")
        );
    }
}
