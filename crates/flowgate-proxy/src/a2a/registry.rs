//! The agents the proxy routes to: those of the config file (`a2a_agents`) and those registered
//! through the api-server (table `a2a_agents`, headers sealed), reloaded on `a2a:changed`, after
//! a lost subscription and every 30 seconds. A config-file name wins over a registered one.
//! Each agent's card is fetched when first needed and kept for a minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flowgate_common::Settings;
use flowgate_common::secretbox::{A2A_HEADERS_CONTEXT, SealKey};
use flowgate_common::tasks::Tasks;
use flowgate_contracts::channels::A2A_AGENTS_CHANGED;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Notification, SharedState};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::Value;

/// How long a fetched card is used before it is fetched again.
const CARD_TTL: Duration = Duration::from_secs(60);
/// The largest card accepted from an agent.
const MAX_CARD_BYTES: usize = 1 << 20;
/// Default seconds a registered agent's call may take (the config file's default too).
const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// Where an agent was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `a2a_agents` in the config file.
    Config,
    /// `/api/admin/a2a/agents`.
    Registered,
}

/// One remote agent.
pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) card_url: reqwest::Url,
    pub(crate) description: Option<String>,
    /// Sent with every request to the agent (its credentials); values marked sensitive.
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
    pub(crate) source: Source,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("card_url", &self.card_url.as_str())
            .field("headers", &self.headers.len())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// An agent's card as fetched, with the JSON-RPC endpoint it names.
#[derive(Debug)]
pub(crate) struct Card {
    pub(crate) document: Value,
    pub(crate) endpoint: reqwest::Url,
}

/// Why an agent's card could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CardError {
    #[error("the agent's card could not be fetched: {0}")]
    Fetch(String),
    #[error("the agent's card answered HTTP {0}")]
    Status(u16),
    #[error("the agent's card is not a JSON object")]
    NotJson,
    #[error("the agent's card names no JSON-RPC endpoint")]
    NoEndpoint,
}

/// The agents, and their cards.
#[derive(Clone)]
pub(crate) struct Registry {
    agents: Arc<ArcSwap<BTreeMap<String, Arc<Agent>>>>,
    cards: moka::future::Cache<String, Arc<Card>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("agents", &self.agents.load().len()).finish_non_exhaustive()
    }
}

/// `headers` as a header map, values sensitive; `field` names the map in errors.
fn header_map<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>, field: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{field}.{name}: not a header name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| format!("{field}.{name}: not a header value"))?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

/// The config file's agents. An agent that cannot be set up stops start-up, naming it.
fn from_settings(settings: &Settings) -> Result<BTreeMap<String, Arc<Agent>>, String> {
    let mut agents = BTreeMap::new();
    for (name, config) in &settings.a2a_agents {
        let card_url = reqwest::Url::parse(&config.card_url).map_err(|e| format!("a2a_agents.{name}.card_url: {e}"))?;
        let headers = header_map(
            config.headers.iter().map(|(k, v)| (k.as_str(), v.expose_secret())),
            &format!("a2a_agents.{name}.headers"),
        )?;
        agents.insert(
            name.clone(),
            Arc::new(Agent {
                name: name.clone(),
                card_url,
                description: config.description.clone(),
                headers,
                timeout: Duration::from_secs(config.timeout_secs),
                source: Source::Config,
            }),
        );
    }
    Ok(agents)
}

/// The registered agents; one whose row cannot be used is logged and left out.
async fn load(database: &Database, seal: &SealKey) -> Result<Vec<Agent>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, card_url, description, headers_sealed, timeout_secs FROM a2a_agents")
        .fetch_all(database.pool())
        .await?;
    let mut agents = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let card_url: String = row.try_get("card_url")?;
        let Ok(card_url) = reqwest::Url::parse(&card_url) else {
            tracing::error!(agent = %name, "the registered agent's card_url is not a URL; the agent is not loaded");
            continue;
        };
        let sealed: Option<Vec<u8>> = row.try_get("headers_sealed")?;
        let headers = match sealed {
            None => HeaderMap::new(),
            Some(sealed) => {
                let opened =
                    flowgate_common::secretbox::open(seal, &sealed).map_err(|e| e.to_string()).and_then(|text| {
                        let map: BTreeMap<String, String> =
                            serde_json::from_str(text.expose_secret()).map_err(|_| "not a JSON object".to_owned())?;
                        header_map(map.iter().map(|(k, v)| (k.as_str(), v.as_str())), "headers")
                    });
                match opened {
                    Ok(headers) => headers,
                    Err(error) => {
                        // Never sent without its credentials: left out until fixed.
                        tracing::error!(agent = %name, %error, "cannot open the agent's sealed headers; the agent is not loaded");
                        continue;
                    }
                }
            }
        };
        let timeout_secs: Option<i64> = row.try_get("timeout_secs")?;
        agents.push(Agent {
            name,
            card_url,
            description: row.try_get::<Option<String>, _>("description")?.filter(|d| !d.is_empty()),
            headers,
            timeout: Duration::from_secs(
                timeout_secs.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0).unwrap_or(DEFAULT_TIMEOUT_SECS),
            ),
            source: Source::Registered,
        });
    }
    Ok(agents)
}

impl Registry {
    /// The config file's agents, then the registered ones, kept fresh by a task under `tasks`.
    pub(crate) fn start(
        settings: &Settings,
        database: Database,
        shared: &SharedState,
        hasher: &flowgate_common::keys::KeyHasher,
        client: reqwest::Client,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let configured = from_settings(settings)?;
        let agents = Arc::new(ArcSwap::from_pointee(configured.clone()));
        let cards = moka::future::Cache::builder().max_capacity(10_000).time_to_live(CARD_TTL).build();
        let seal = SealKey::from_hasher(hasher, A2A_HEADERS_CONTEXT);
        let mut changes = shared.subscribe(A2A_AGENTS_CHANGED);
        let target = agents.clone();
        let stale = cards.clone();
        tasks.spawn("a2a-agents", async move {
            loop {
                match load(&database, &seal).await {
                    Ok(registered) => {
                        let mut all = configured.clone();
                        for agent in registered {
                            if let Some(existing) = all.get(&agent.name) {
                                tracing::warn!(agent = %existing.name, "a registered A2A agent has the name of one in the config file; the config file's is used");
                                continue;
                            }
                            all.insert(agent.name.clone(), Arc::new(agent));
                        }
                        target.store(Arc::new(all));
                        // A changed card URL or credentials: fetch cards again.
                        stale.invalidate_all();
                    }
                    Err(error) => tracing::warn!(%error, "cannot load the registered A2A agents; keeping the previous ones"),
                }
                tokio::select! {
                    message = changes.recv() => {
                        if matches!(message, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return;
                        }
                        let _: Option<Notification> = message.ok();
                    }
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        });
        Ok(Self { agents, cards, client })
    }

    /// The agent named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.agents.load().get(name).cloned()
    }

    /// Every agent, by name.
    pub(crate) fn all(&self) -> Arc<BTreeMap<String, Arc<Agent>>> {
        self.agents.load_full()
    }

    /// The HTTP client calls go through.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The agent's card (fetched, or from the last minute).
    pub(crate) async fn card(&self, agent: &Agent) -> Result<Arc<Card>, CardError> {
        let cache_key = format!("{}\u{0}{}", agent.name, agent.card_url);
        if let Some(card) = self.cards.get(&cache_key).await {
            return Ok(card);
        }
        let card = Arc::new(self.fetch_card(agent).await?);
        self.cards.insert(cache_key, card.clone()).await;
        Ok(card)
    }

    #[tracing::instrument(name = "a2a.card", skip_all, fields(agent = %agent.name))]
    async fn fetch_card(&self, agent: &Agent) -> Result<Card, CardError> {
        let response = self
            .client
            .get(agent.card_url.clone())
            .headers(agent.headers.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(agent.timeout.min(Duration::from_secs(30)))
            .send()
            .await
            .map_err(|e| CardError::Fetch(super::describe_error(&e)))?;
        if !response.status().is_success() {
            return Err(CardError::Status(response.status().as_u16()));
        }
        let body = super::read_limited(response, MAX_CARD_BYTES).await.map_err(CardError::Fetch)?;
        let document: Value = serde_json::from_slice(&body).map_err(|_| CardError::NotJson)?;
        if !document.is_object() {
            return Err(CardError::NotJson);
        }
        let endpoint = super::card::endpoint(&document, &agent.card_url).ok_or(CardError::NoEndpoint)?;
        Ok(Card { document, endpoint })
    }
}
