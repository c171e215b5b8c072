//! `duka check --graph`: the menus as a graph, to see a journey whole before shoppers walk it.
//!
//! Nodes are screens: the static screens of `screens.toml` reachable from the main menu, the
//! engine's built-in flows (categories, cart, orders, checkout) and, under the shop, every
//! category and product of the catalog. Edges are options, labelled with the key a shopper
//! types and the option's English label. The navigation keys that work on every screen (`0`
//! back, `00` main menu, `98` next page) are left out; they would only hide the journey.
//!
//! Printed as Mermaid (renders on GitHub and in most Markdown viewers) or Graphviz DOT.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use crate::menu::catalog::Target;
use crate::menu::engine::MAIN_SCREEN;
use crate::menu::{Catalog, Lang};

/// The two ways to print the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Screens and the options between them. Nodes are numbered in the order they are found.
#[derive(Debug, Default)]
pub struct Graph {
    /// Node labels; a node's id is its index (`n0`, `n1`, ...).
    pub nodes: Vec<String>,
    /// `(from, to, label)`, node indexes.
    pub edges: Vec<(usize, usize, String)>,
    by_key: BTreeMap<String, usize>,
}

impl Graph {
    /// The graph of `catalog`'s menus.
    pub fn of(catalog: &Catalog) -> Self {
        let mut graph = Graph::default();
        let text = |id: &str| {
            catalog
                .text(
                    Lang::En,
                    id,
                    &[
                        ("shop", catalog.shop_name()),
                        ("help_phone", catalog.help_phone()),
                    ],
                )
                .replace('\n', " ")
        };
        let main = graph.screen(catalog, MAIN_SCREEN, &text);
        let mut queue = VecDeque::from([(MAIN_SCREEN.to_owned(), main)]);
        let mut seen = std::collections::BTreeSet::from([MAIN_SCREEN.to_owned()]);
        while let Some((id, from)) = queue.pop_front() {
            let Some(screen) = catalog.screen(&id) else {
                continue;
            };
            for option in &screen.options {
                let label = format!("{}: {}", option.key, text(&option.label));
                let to = match &option.target {
                    Target::Screen(next) => {
                        let to = graph.screen(catalog, next, &text);
                        if seen.insert(next.clone()) {
                            queue.push_back((next.clone(), to));
                        }
                        to
                    }
                    Target::Shop => graph.shop(catalog),
                    Target::Cart => graph.node("flow:cart", "cart (built in)"),
                    Target::Orders => graph.node("flow:orders", "my orders (built in)"),
                    Target::Checkout => graph.node("flow:checkout", "checkout (built in)"),
                    Target::Language(lang) => {
                        graph
                            .edges
                            .push((from, main, format!("{label} ({})", lang.code())));
                        continue;
                    }
                };
                graph.edges.push((from, to, label));
            }
        }
        graph
    }

    /// The node called `key`, added with `label` the first time.
    fn node(&mut self, key: &str, label: &str) -> usize {
        if let Some(&index) = self.by_key.get(key) {
            return index;
        }
        self.nodes.push(label.to_owned());
        self.by_key.insert(key.to_owned(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// The static screen `id`, labelled with its id and English title.
    fn screen(&mut self, catalog: &Catalog, id: &str, text: &impl Fn(&str) -> String) -> usize {
        let label = match catalog.screen(id) {
            Some(screen) => format!("{id}: {}", text(&screen.title)),
            None => id.to_owned(),
        };
        self.node(&format!("screen:{id}"), &label)
    }

    /// The categories screen, its categories and their products (added once).
    fn shop(&mut self, catalog: &Catalog) -> usize {
        if let Some(&index) = self.by_key.get("flow:shop") {
            return index;
        }
        let categories = self.node("flow:shop", "categories (built in)");
        for (i, category) in catalog.categories().iter().enumerate() {
            let node = self.node(
                &format!("category:{}", category.id),
                &format!("category {}", category.name(Lang::En)),
            );
            self.edges.push((
                categories,
                node,
                format!("{}: {}", i + 1, category.name(Lang::En)),
            ));
            for (j, product) in category.products.iter().enumerate() {
                let to = self.node(
                    &format!("product:{}", product.id),
                    &format!("{}, KES {}", product.name, product.price),
                );
                self.edges
                    .push((node, to, format!("{}: {}", j + 1, product.name)));
                let cart = self.node("flow:cart", "cart (built in)");
                self.edges.push((to, cart, "1-99: quantity".to_owned()));
            }
        }
        categories
    }

    /// `(from label, to label, edge label)` of every edge, for tests and readers.
    pub fn labelled_edges(&self) -> Vec<(&str, &str, &str)> {
        self.edges
            .iter()
            .map(|(from, to, label)| {
                (
                    self.nodes[*from].as_str(),
                    self.nodes[*to].as_str(),
                    label.as_str(),
                )
            })
            .collect()
    }

    pub fn render(&self, format: GraphFormat) -> String {
        match format {
            GraphFormat::Mermaid => self.mermaid(),
            GraphFormat::Dot => self.dot(),
        }
    }

    /// A Mermaid flowchart, left to right.
    pub fn mermaid(&self) -> String {
        let escape = |s: &str| s.replace('"', "#quot;");
        let mut out = String::from("flowchart LR\n");
        for (i, label) in self.nodes.iter().enumerate() {
            let _ = writeln!(out, "    n{i}[\"{}\"]", escape(label));
        }
        for (from, to, label) in &self.edges {
            let _ = writeln!(out, "    n{from} -->|\"{}\"| n{to}", escape(label));
        }
        out
    }

    /// A Graphviz digraph (`duka check --graph dot | dot -Tsvg > menus.svg`).
    pub fn dot(&self) -> String {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::from("digraph menus {\n    rankdir=LR;\n    node [shape=box];\n");
        for (i, label) in self.nodes.iter().enumerate() {
            let _ = writeln!(out, "    n{i} [label=\"{}\"];", escape(label));
        }
        for (from, to, label) in &self.edges {
            let _ = writeln!(out, "    n{from} -> n{to} [label=\"{}\"];", escape(label));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Graph {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"));
        Graph::of(&Catalog::load(dir).unwrap())
    }

    #[test]
    fn the_shipped_menus_have_the_expected_edges() {
        let graph = shipped();
        let edges = graph.labelled_edges();
        for expected in [
            ("main: Welcome to Duka", "categories (built in)", "1: Shop"),
            ("main: Welcome to Duka", "cart (built in)", "2: My cart"),
            (
                "main: Welcome to Duka",
                "my orders (built in)",
                "3: My orders",
            ),
            (
                "main: Welcome to Duka",
                "language: Choose a language",
                "4: Language",
            ),
            ("main: Welcome to Duka", "help: Help", "5: Help"),
            (
                "language: Choose a language",
                "main: Welcome to Duka",
                "2: Kiswahili (sw)",
            ),
            (
                "categories (built in)",
                "category Groceries",
                "1: Groceries",
            ),
            (
                "category Groceries",
                "Maize Flour 2kg, KES 230",
                "1: Maize Flour 2kg",
            ),
            ("category Groceries", "Sugar 1kg, KES 190", "2: Sugar 1kg"),
            ("Sugar 1kg, KES 190", "cart (built in)", "1-99: quantity"),
        ] {
            assert!(edges.contains(&expected), "{expected:?} not in {edges:#?}");
        }
        // Every product of the catalog is a node.
        let catalog = Catalog::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/menus"
        )))
        .unwrap();
        for product in catalog.products() {
            let label = format!("{}, KES {}", product.name, product.price);
            assert!(graph.nodes.contains(&label), "{label}");
        }
    }

    #[test]
    fn dot_output_is_balanced_and_declares_every_edge_endpoint() {
        let dot = shipped().dot();
        assert!(dot.starts_with("digraph menus {\n"));
        assert!(dot.ends_with("}\n"));
        // Braces balance outside quoted labels.
        let mut depth = 0_i32;
        let mut quoted = false;
        let mut escaped = false;
        for c in dot.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '{' if !quoted => depth += 1,
                '}' if !quoted => {
                    depth -= 1;
                    assert!(depth >= 0, "a closing brace too many");
                }
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        assert!(!quoted, "an unterminated label");

        let declared: std::collections::BTreeSet<&str> = dot
            .lines()
            .filter(|l| !l.contains("->") && l.contains("[label="))
            .map(|l| l.trim().split(' ').next().unwrap())
            .collect();
        let mut edges = 0;
        for line in dot.lines().filter(|l| l.contains(" -> ")) {
            let mut words = line.split_whitespace();
            let from = words.next().unwrap();
            assert_eq!(words.next(), Some("->"));
            let to = words.next().unwrap();
            assert!(declared.contains(from), "{from} in {line}");
            assert!(declared.contains(to), "{to} in {line}");
            assert!(line.ends_with("\"];"), "{line}");
            edges += 1;
        }
        assert!(edges > 20, "{dot}");
    }

    #[test]
    fn labels_with_quotes_are_escaped() {
        let graph = Graph {
            nodes: vec!["a \"b\"".into(), "c\\d".into()],
            edges: vec![(0, 1, "1: \"x\"".into())],
            by_key: BTreeMap::new(),
        };
        assert!(graph.dot().contains("n0 [label=\"a \\\"b\\\"\"];"));
        assert!(graph.dot().contains("n1 [label=\"c\\\\d\"];"));
        assert!(graph.mermaid().contains("n0 -->|\"1: #quot;x#quot;\"| n1"));
    }
}
