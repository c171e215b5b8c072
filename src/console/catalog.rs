//! The catalog page: the menus and products as this node serves them, and what `duka check`
//! says about the menus folder now (an edit not yet loaded with `SIGHUP` shows up here).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::html;

use super::auth::Operator;
use super::page::frame;
use crate::graph::{Graph, GraphFormat};
use crate::menu::{Catalog, Lang};
use crate::startup::AppState;

/// `GET /console/catalog`.
pub async fn page(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
) -> Response {
    let catalog = app.shop.catalog();
    let dir = app
        .console
        .as_deref()
        .map(|c| c.menus_dir.clone())
        .unwrap_or_default();
    let check = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            Catalog::load(&dir).map(|_| ()).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    };
    frame(
        "Catalog",
        Some(&operator.csrf),
        html! {
            h1 { (catalog.shop_name()) ": catalog" }
            h2 { "duka check " (dir.display()) }
            @match &check {
                Ok(()) => p id="check" { "menus and catalog are valid" },
                Err(e) => pre.error id="check" { (e) },
            }
            table id="products" {
                tr { th { "category" } th { "product" } th { "id" } th { "price (KES)" } }
                @for category in catalog.categories() {
                    @for product in &category.products {
                        tr { td { (category.name(Lang::default())) } td { (product.name) } td { (product.id) } td { (product.price) } }
                    }
                }
            }
            h2 { "Menus (Mermaid, as `duka check --graph mermaid`)" }
            pre id="graph" { (Graph::of(&catalog).render(GraphFormat::Mermaid)) }
        },
    )
    .into_response()
}
