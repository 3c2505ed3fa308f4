//! A deployment's `model_info.mode`: which endpoints it serves.
//!
//! `chat`, `completion` and `responses` deployments serve the chat endpoints (Chat Completions,
//! Anthropic Messages, Responses) and `/v1/completions`; `embedding` ones serve `/v1/embeddings`
//! only. Other LiteLLM modes (`image_generation`, `audio_transcription`, `audio_speech`,
//! `moderation`, `rerank`, ...) are accepted and listed in `/v1/models`, but Flowgate has no
//! endpoint for them, so neither kind of request reaches them. A deployment without a mode serves
//! every endpoint.

use crate::wire::Endpoint;

/// What a deployment's `model_info.mode` lets it serve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ModelMode {
    /// No mode configured: every endpoint.
    #[default]
    Any,
    /// `chat`, `completion` or `responses`: the chat and completions endpoints.
    Chat(String),
    /// `embedding`: `/v1/embeddings`.
    Embedding,
    /// Any other mode: no endpoint of this gateway.
    Other(String),
}

impl ModelMode {
    /// The mode configured as `mode`.
    pub(crate) fn parse(mode: Option<&str>) -> Self {
        match mode.map(str::trim) {
            None | Some("") => Self::Any,
            Some("embedding") => Self::Embedding,
            Some(chat @ ("chat" | "completion" | "responses")) => Self::Chat(chat.to_owned()),
            Some(other) => Self::Other(other.to_owned()),
        }
    }

    /// The mode's name, as configured (`None` when unset).
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Self::Any => None,
            Self::Chat(name) | Self::Other(name) => Some(name),
            Self::Embedding => Some("embedding"),
        }
    }

    /// Whether a deployment of this mode serves requests to `endpoint`.
    pub(crate) fn serves(&self, endpoint: Endpoint) -> bool {
        match self {
            Self::Any => true,
            Self::Chat(_) => endpoint != Endpoint::Embeddings,
            Self::Embedding => endpoint == Endpoint::Embeddings,
            Self::Other(_) => false,
        }
    }
}

/// What a request to `endpoint` is called in a refusal.
pub(crate) fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_serves_its_endpoints() {
        let all = [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings];
        let served = |mode: Option<&str>| {
            let mode = ModelMode::parse(mode);
            all.iter().map(|e| mode.serves(*e)).collect::<Vec<_>>()
        };
        assert_eq!(served(None), [true, true, true]);
        assert_eq!(served(Some("chat")), [true, true, false]);
        assert_eq!(served(Some("completion")), [true, true, false]);
        assert_eq!(served(Some("responses")), [true, true, false]);
        assert_eq!(served(Some("embedding")), [false, false, true]);
        assert_eq!(served(Some("image_generation")), [false, false, false]);
        assert_eq!(served(Some("audio_transcription")), [false, false, false]);
        assert_eq!(ModelMode::parse(Some("audio_speech")).name(), Some("audio_speech"));
        assert_eq!(ModelMode::parse(Some("embedding")).name(), Some("embedding"));
    }
}
