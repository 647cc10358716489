//! Authentication: a user/password login returns a token, and every later request on the channel
//! carries it. Its own module because the KV client and the watch both talk over the
//! [`AuthedChannel`].

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::EtcdConfig;
use crate::error::EtcdError;
use crate::pb::{self, auth_client::AuthClient};

/// A channel whose requests carry etcd's auth token (none when no user is configured).
pub(crate) type AuthedChannel = InterceptedService<Channel, TokenInterceptor>;

/// Adds etcd's auth token to every request once authenticated.
#[derive(Clone, Default)]
pub(crate) struct TokenInterceptor {
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl TokenInterceptor {
    /// Logs in as the configured user, if any; without one, requests go out without a token.
    pub(crate) async fn authenticate(
        channel: &Channel,
        config: &EtcdConfig,
    ) -> Result<Self, EtcdError> {
        let mut interceptor = TokenInterceptor::default();
        if let Some(user) = config.username.as_deref().filter(|u| !u.is_empty()) {
            let mut auth = AuthClient::new(channel.clone());
            let request = pb::AuthenticateRequest {
                name: user.to_string(),
                password: config.password.clone().unwrap_or_default(),
            };
            let response = tokio::time::timeout(config.request_timeout, auth.authenticate(request))
                .await
                .map_err(|_| EtcdError::Timeout(config.request_timeout))?
                .map_err(|s| EtcdError::Auth(s.message().to_string()))?
                .into_inner();
            let token = MetadataValue::try_from(response.token.as_str())
                .map_err(|e| EtcdError::Auth(format!("unusable token: {e}")))?;
            interceptor.token = Some(token);
        }
        Ok(interceptor)
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("token", token.clone());
        }
        Ok(req)
    }
}
