//! Placeholder (the menus helper replaces this file).
use super::{Catalog, Hop, Lang, Reply, Step};
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MenuState;
impl MenuState {
    pub fn screen_id(&self) -> &'static str {
        "main"
    }
}
pub fn start(_hop: &Hop<'_>) -> Step {
    unimplemented!()
}
pub fn step(_hop: &Hop<'_>, _state: &MenuState, _input: &str) -> Step {
    unimplemented!()
}
pub fn apology(_c: &Catalog, _l: Lang) -> Reply {
    unimplemented!()
}
