//! The Cognito side of the harness: when `PORTRAIT_TEST_COGNITO_ENDPOINT` names a Cognito
//! stand-in (moto's server, started by `cargo xtask test`), every test gets a user pool of its
//! own, shaped like `deploy/portrait.yaml`'s, holding the demo users.

use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, AuthFlowType, ExplicitAuthFlowsType, MessageActionType, PasswordPolicyType,
    UserPoolPolicyType, UsernameAttributeType,
};
use aws_sdk_cognitoidentityprovider::Client;
use server::embedded::issuer::{DEMO_PASSWORD, DEMO_USERS};

/// moto's server, when the suite runs against it. It serves every AWS API it fakes on one port:
/// Cognito, and an S3 that checks no signature (never use it to prove a rejection).
pub fn moto_endpoint() -> Option<String> {
    std::env::var("PORTRAIT_TEST_COGNITO_ENDPOINT").ok()
}

#[derive(Clone)]
pub struct TestPool {
    pub client: Client,
    pub endpoint: String,
    pub pool_id: String,
    pub client_id: String,
}

impl TestPool {
    /// The pool for one test, or `None` when the suite runs with the embedded issuer.
    pub async fn for_test() -> Option<Self> {
        let endpoint = moto_endpoint()?;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let config = aws_sdk_cognitoidentityprovider::config::Builder::from(&aws)
            .endpoint_url(&endpoint)
            .build();
        let client = Client::from_conf(config);
        let pool_id = create_pool(&client).await;
        let client_id = create_client(&client, &pool_id, "portrait").await;
        client
            .create_group()
            .user_pool_id(&pool_id)
            .group_name("Admin")
            .send()
            .await
            .expect("an Admin group");
        let pool = Self {
            client,
            endpoint,
            pool_id,
            client_id,
        };
        for demo in &DEMO_USERS {
            pool.add_user(demo.email, demo.name, &demo.phone.replace(' ', ""))
                .await;
            if demo.role == "Admin" {
                pool.client
                    .admin_add_user_to_group()
                    .user_pool_id(&pool.pool_id)
                    .username(demo.email)
                    .group_name("Admin")
                    .send()
                    .await
                    .expect("Ada joins the Admin group");
            }
        }
        Some(pool)
    }

    /// What the app needs to use this pool.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("COGNITO_USER_POOL_ID".into(), self.pool_id.clone()),
            ("COGNITO_CLIENT_ID".into(), self.client_id.clone()),
            ("COGNITO_ENDPOINT_URL".into(), self.endpoint.clone()),
        ]
    }

    async fn add_user(&self, email: &str, name: &str, phone: &str) {
        self.create_user(email, name, phone).await;
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(email)
            .password(DEMO_PASSWORD)
            .permanent(true)
            .send()
            .await
            .expect("a permanent password");
    }

    /// A user as an administrator creates one: with a temporary password (the demo password),
    /// which Cognito wants changed at the first sign-in.
    pub async fn add_user_with_temporary_password(&self, email: &str) {
        self.create_user(email, "New Person", "+15550000001").await;
    }

    async fn create_user(&self, email: &str, name: &str, phone: &str) {
        let attribute = |name: &str, value: &str| {
            AttributeType::builder()
                .name(name)
                .value(value)
                .build()
                .unwrap()
        };
        self.client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(email)
            .temporary_password(DEMO_PASSWORD)
            .user_attributes(attribute("email", email))
            .user_attributes(attribute("email_verified", "true"))
            .user_attributes(attribute("name", name))
            .user_attributes(attribute("phone_number", phone))
            .message_action(MessageActionType::Suppress)
            .send()
            .await
            .expect("a user");
    }

    /// An access token from this pool for another app client (made on the spot).
    pub async fn token_for_another_client(&self, email: &str) -> String {
        let other = create_client(&self.client, &self.pool_id, "another-app").await;
        sign_in(&self.client, &other, email).await
    }

    /// An access token for the same user in another pool of the same provider.
    pub async fn token_from_another_pool(&self, email: &str) -> String {
        let pool_id = create_pool(&self.client).await;
        let other = Self {
            client: self.client.clone(),
            endpoint: self.endpoint.clone(),
            client_id: create_client(&self.client, &pool_id, "portrait").await,
            pool_id,
        };
        other.add_user(email, "Someone Else", "+15550000000").await;
        sign_in(&other.client, &other.client_id, email).await
    }
}

async fn create_pool(client: &Client) -> String {
    client
        .create_user_pool()
        .pool_name(format!("portrait-{}", uuid::Uuid::new_v4().simple()))
        .username_attributes(UsernameAttributeType::Email)
        // The demo password has no capitals or digits; a real pool keeps Cognito's policy.
        .policies(
            UserPoolPolicyType::builder()
                .password_policy(
                    PasswordPolicyType::builder()
                        .minimum_length(8)
                        .require_uppercase(false)
                        .require_numbers(false)
                        .require_symbols(false)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("a user pool")
        .user_pool
        .and_then(|pool| pool.id)
        .expect("the pool's id")
}

async fn create_client(client: &Client, pool_id: &str, name: &str) -> String {
    client
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name(name)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .set_read_attributes(Some(
            ["email", "name", "phone_number", "picture"]
                .map(String::from)
                .to_vec(),
        ))
        .send()
        .await
        .expect("an app client")
        .user_pool_client
        .and_then(|c| c.client_id)
        .expect("the client's id")
}

async fn sign_in(client: &Client, client_id: &str, email: &str) -> String {
    client
        .initiate_auth()
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .client_id(client_id)
        .auth_parameters("USERNAME", email)
        .auth_parameters("PASSWORD", DEMO_PASSWORD)
        .send()
        .await
        .expect("a sign-in")
        .authentication_result
        .and_then(|r| r.access_token)
        .expect("an access token")
}
