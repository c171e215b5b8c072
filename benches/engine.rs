//! Micro-benchmarks of the CPU work in one USSD hop, with no I/O: decoding Africa's Talking's
//! form, the engine's transition over the real `menus/` catalog, rendering the `CON`/`END` body,
//! and encoding and decoding the session state stored between hops.
//!
//! `hop/*` chains them as `session::handle_hop` does for one input (decode the form, decode the
//! stored session, cart and profile, step, encode the new session, render), so it is the CPU cost
//! of a hop on the server minus HTTP, tracing and Redis.
//!
//! Run with `cargo bench --bench engine` (or `-- --quick` for a short run). Under
//! `cargo test --all-targets` each benchmark runs once, as a smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use duka::gateway::africastalking;
use duka::menu::{self, Cart, Catalog, Hop, MenuState, Profile, Reply, Step};
use duka::msisdn::Msisdn;
use duka::session::SessionRecord;

/// A shopper's phone: what the store keeps between hops, threaded through the engine.
struct Phone {
    catalog: Catalog,
    msisdn: Msisdn,
    cart: Cart,
    profile: Profile,
    state: MenuState,
    reply: Reply,
}

impl Phone {
    fn new() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("menus");
        let catalog = Catalog::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mut phone = Phone {
            catalog,
            msisdn: Msisdn::parse("+254712345678").expect("a valid number"),
            cart: Cart::default(),
            profile: Profile::default(),
            state: MenuState::default(),
            reply: Reply::con(""),
        };
        let step = menu::start(&phone.hop());
        phone.apply(step);
        phone
    }

    fn hop(&self) -> Hop<'_> {
        Hop {
            catalog: &self.catalog,
            msisdn: &self.msisdn,
            mpesa: true,
            screen_max: menu::DEFAULT_SCREEN_MAX,
            cart: &self.cart,
            profile: &self.profile,
            payee: duka::menu::Payee::Paybill("174379"),
            new_order_number: "D7K2Q9",
            push_blocked_until_ms: None,
            now_ms: 1_700_000_000_000,
        }
    }

    fn apply(&mut self, step: Step) {
        self.state = step.state;
        self.cart = step.cart;
        self.profile = step.profile;
        self.reply = step.reply;
    }

    /// Presses each key in turn; returns the phone as it stands after them.
    fn after(mut self, inputs: &[&str]) -> Self {
        for input in inputs {
            let step = menu::step(&self.hop(), &self.state, input);
            self.apply(step);
        }
        self
    }

    fn step(&self, input: &str) -> Step {
        menu::step(&self.hop(), &self.state, input)
    }

    fn record(&self, text: &str) -> SessionRecord {
        SessionRecord {
            text: text.to_owned(),
            reply: self.reply.clone(),
            menu: self.state.clone(),
            hops: 6,
            hop_id: None,
            at_ms: 0,
            push_blocked_until_ms: None,
        }
    }
}

fn form(text: &str) -> Vec<u8> {
    format!(
        "sessionId=ATUid_0a1b2c3d4e5f&serviceCode=%2A384%2A12%23&phoneNumber=%2B254712345678&networkCode=63902&text={}",
        text.replace('*', "%2A")
    )
    .into_bytes()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let first = form("");
    group.bench_function("first_hop", |b| {
        b.iter(|| africastalking::parse(black_box(&first)))
    });
    let deep = form("1*4*98*98*12*3*1");
    group.bench_function("seven_inputs", |b| {
        b.iter(|| africastalking::parse(black_box(&deep)))
    });
    group.finish();
}

fn transition(c: &mut Criterion) {
    let mut group = c.benchmark_group("transition");
    let home = Phone::new();
    group.bench_function("start", |b| b.iter(|| menu::start(black_box(&home.hop()))));
    group.bench_function("main_to_categories", |b| {
        b.iter(|| home.step(black_box("1")))
    });
    let categories = Phone::new().after(&["1"]);
    group.bench_function("categories_to_paged_products", |b| {
        b.iter(|| categories.step(black_box("4")))
    });
    let snacks = Phone::new().after(&["1", "4"]);
    group.bench_function("products_next_page", |b| {
        b.iter(|| snacks.step(black_box("98")))
    });
    let quantity = Phone::new().after(&["1", "3", "5"]);
    group.bench_function("quantity_to_added", |b| {
        b.iter(|| quantity.step(black_box("3")))
    });
    let added = Phone::new().after(&["1", "3", "5", "3"]);
    group.bench_function("added_to_checkout", |b| {
        b.iter(|| added.step(black_box("1")))
    });
    let checkout = Phone::new().after(&["1", "3", "5", "3", "1"]);
    group.bench_function("checkout_places_order", |b| {
        b.iter(|| checkout.step(black_box("1")))
    });
    let invalid = Phone::new().after(&["1", "4", "98"]);
    group.bench_function("invalid_choice_hint", |b| {
        b.iter(|| invalid.step(black_box("x")))
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    let products = Phone::new().after(&["1", "4"]);
    group.bench_function("con_products", |b| {
        b.iter(|| africastalking::render(black_box(&products.reply)))
    });
    group.finish();
}

fn state(c: &mut Criterion) {
    let mut group = c.benchmark_group("state");
    // Deep in the menus with a paged list: the largest record a walk to checkout stores.
    let deep = Phone::new().after(&["1", "4", "98", "98"]);
    let record = deep.record("1*4*98*98");
    let encoded = serde_json::to_vec(&record).expect("a record encodes");
    group.bench_function("session_encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)))
    });
    group.bench_function("session_decode", |b| {
        b.iter(|| serde_json::from_slice::<SessionRecord>(black_box(&encoded)))
    });
    let with_cart = Phone::new().after(&["1", "3", "5", "3", "2", "2", "3"]);
    let cart = serde_json::to_vec(&with_cart.cart).expect("a cart encodes");
    group.bench_function("cart_encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&with_cart.cart)))
    });
    group.bench_function("cart_decode", |b| {
        b.iter(|| serde_json::from_slice::<Cart>(black_box(&cart)))
    });
    group.finish();
}

/// `session::handle_hop` draws a fresh order number in the shopper's shard on every hop, in
/// case the hop places an order.
fn order_number(c: &mut Criterion) {
    use rand::SeedableRng;
    let mut group = c.benchmark_group("order_number");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let shard = duka::keys::shard_of("254712345678");
    group.bench_function("draw_in_shard", |b| {
        b.iter(|| duka::orders::draw_order_number(&mut rng, black_box(shard), &[]))
    });
    group.finish();
}

/// The CPU of one hop as `session::handle_hop` spends it, without I/O.
fn hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("hop");
    let before = Phone::new().after(&["1", "3", "5"]);
    let stored_session = serde_json::to_vec(&before.record("1*3*5")).expect("encodes");
    let stored_cart = serde_json::to_vec(&before.cart).expect("encodes");
    let stored_profile = serde_json::to_vec(&before.profile).expect("encodes");
    let body = form("1*3*5*3");
    group.bench_function("quantity_to_added", |b| {
        b.iter(|| {
            let req = africastalking::parse(black_box(&body)).expect("a valid form");
            let session: SessionRecord =
                serde_json::from_slice(black_box(&stored_session)).expect("decodes");
            let cart: Cart = serde_json::from_slice(black_box(&stored_cart)).expect("decodes");
            let profile: Profile =
                serde_json::from_slice(black_box(&stored_profile)).expect("decodes");
            let hop = Hop {
                catalog: &before.catalog,
                msisdn: &req.msisdn,
                mpesa: req.msisdn.mpesa_payable(req.network_code.as_deref()),
                screen_max: menu::DEFAULT_SCREEN_MAX,
                cart: &cart,
                profile: &profile,
                payee: duka::menu::Payee::Paybill("174379"),
                new_order_number: "D7K2Q9",
                push_blocked_until_ms: None,
                now_ms: 1_700_000_000_000,
            };
            let step = menu::step(&hop, &session.menu, "3");
            let record = SessionRecord {
                text: "1*3*5*3".to_owned(),
                reply: step.reply.clone(),
                menu: step.state,
                hops: session.hops + 1,
                hop_id: None,
                at_ms: 0,
                push_blocked_until_ms: None,
            };
            let encoded_session = serde_json::to_vec(&record).expect("encodes");
            let encoded_cart = serde_json::to_vec(&step.cart).expect("encodes");
            (
                encoded_session,
                encoded_cart,
                africastalking::render(&step.reply),
            )
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = engine;
    config = config();
    targets = decode, transition, render, state, order_number, hop
}
criterion_main!(engine);
