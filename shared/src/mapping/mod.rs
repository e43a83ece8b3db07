//! TEMPORARY stub until the mapping engine lands (replaced on merge).
use serde_json::{Map, Value};
#[derive(Debug, thiserror::Error)]
pub enum MappingError { #[error("{0}")] Invalid(String) }
#[derive(Debug, Clone, Default)]
pub struct Selector { pub query: String, pub options: Map<String, Value> }
impl Selector {
    pub fn bool_option(&self, key: &str, default: bool) -> Result<bool, MappingError> {
        match self.options.get(key) { None => Ok(default), Some(Value::Bool(b)) => Ok(*b), Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true), Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false), Some(_) => Err(MappingError::Invalid(key.into())) }
    }
    pub fn int_option(&self, key: &str, default: Option<i64>) -> Result<Option<i64>, MappingError> {
        match self.options.get(key) { None => Ok(default), Some(Value::Number(n)) => Ok(n.as_i64()), Some(Value::String(s)) => s.parse().map(Some).map_err(|_| MappingError::Invalid(key.into())), Some(_) => Err(MappingError::Invalid(key.into())) }
    }
    pub fn str_option(&self, key: &str) -> Result<Option<String>, MappingError> {
        match self.options.get(key) { None | Some(Value::Null) => Ok(None), Some(Value::String(s)) => Ok(Some(s.clone())), Some(_) => Err(MappingError::Invalid(key.into())) }
    }
}
pub struct PortAppConfig { pub enable_merge_entity: bool, pub delete_dependent_entities: bool, pub create_missing_related_entities: bool, pub entity_deletion_threshold: f64, pub resources: Vec<ResourceConfig>, pub extra: Map<String, Value> }
impl PortAppConfig { pub fn parse(_t: &str) -> Result<Self, MappingError> { todo!() } pub fn from_value(_v: Value) -> Result<Self, MappingError> { todo!() } }
pub struct ResourceConfig { pub kind: String, pub selector: Selector }
#[derive(Default)] pub struct MappingOptions { pub allow_env: bool }
pub struct CompiledConfig { c: PortAppConfig, r: Vec<CompiledResource> }
impl CompiledConfig { pub fn compile(_c: PortAppConfig, _o: &MappingOptions) -> Result<Self, MappingError> { todo!() } pub fn config(&self) -> &PortAppConfig { &self.c } pub fn resources(&self) -> &[CompiledResource] { &self.r } }
pub struct CompiledResource { s: Selector }
impl CompiledResource { pub fn index(&self) -> usize { 0 } pub fn kind(&self) -> &str { "" } pub fn selector(&self) -> &Selector { &self.s } pub fn map_item(&self, _raw: &Value, _k: bool) -> Vec<ItemOutcome> { vec![] } }
pub enum ItemOutcome { Mapped { entity: crate::catalog::Entity, warnings: Vec<FieldWarning> }, Filtered { entity: Option<crate::catalog::Entity> }, Dropped { warnings: Vec<FieldWarning> }, SelectorError { message: String }, ParentSkipped { message: String } }
pub struct FieldWarning { pub field: String, pub expression: String, pub message: String }
