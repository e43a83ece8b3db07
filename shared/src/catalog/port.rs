//! TEMP stub (replaced on merge)
pub const PORT_EU_BASE_URL: &str = "https://api.getport.io";
pub const PORT_US_BASE_URL: &str = "https://api.us.getport.io";
pub struct PortConfig { pub base_url: url::Url, pub client_id: String, pub client_secret: secrecy::SecretString, pub integration_identifier: String, pub integration_type: String, pub version: String, pub timeout: std::time::Duration, pub max_retries: u32 }
pub struct PortClient;
impl PortClient { pub fn new(_c: PortConfig) -> Result<Self, super::CatalogError> { todo!() } }
