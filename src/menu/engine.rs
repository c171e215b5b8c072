//! Placeholder (the menus helper replaces this file).
use super::{Hop, Step};
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MenuState;
pub fn start(_hop: &Hop<'_>) -> Step {
    unimplemented!()
}
pub fn step(_hop: &Hop<'_>, _state: &MenuState, _input: &str) -> Step {
    unimplemented!()
}
