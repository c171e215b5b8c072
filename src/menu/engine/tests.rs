use super::*;
use std::path::Path;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("menus");
        Catalog::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A shopper's phone: the state the store would keep between hops, and the last reply.
struct Phone {
    msisdn: Msisdn,
    cart: Cart,
    profile: Profile,
    state: MenuState,
    paybill: String,
    next_order: String,
    now_ms: i64,
    reply: Reply,
    effects: Vec<Effect>,
}

impl Phone {
    fn new() -> Self {
        Phone {
            msisdn: Msisdn::parse("0712345678").unwrap(),
            cart: Cart::default(),
            profile: Profile::default(),
            state: MenuState::default(),
            paybill: "174379".to_owned(),
            next_order: "D7K2Q9".to_owned(),
            now_ms: 1_700_000_000_000,
            reply: Reply::con(""),
            effects: Vec::new(),
        }
    }

    fn apply(&mut self, step: Step) -> &str {
        self.state = step.state;
        self.cart = step.cart;
        self.profile = step.profile;
        self.effects = step.effects;
        self.reply = step.reply;
        &self.reply.text
    }

    fn dial(&mut self) -> &str {
        let hop = Hop {
            catalog: catalog(),
            msisdn: &self.msisdn,
            cart: &self.cart,
            profile: &self.profile,
            paybill: &self.paybill,
            new_order_number: &self.next_order,
            now_ms: self.now_ms,
        };
        let step = start(&hop);
        self.apply(step)
    }

    fn press(&mut self, input: &str) -> &str {
        let hop = Hop {
            catalog: catalog(),
            msisdn: &self.msisdn,
            cart: &self.cart,
            profile: &self.profile,
            paybill: &self.paybill,
            new_order_number: &self.next_order,
            now_ms: self.now_ms,
        };
        let step = step(&hop, &self.state, input);
        self.apply(step)
    }

    fn presses(&mut self, inputs: &[&str]) -> &str {
        for input in inputs {
            self.press(input);
        }
        &self.reply.text
    }
}

#[test]
fn print_tour() {
    let mut phone = Phone::new();
    for (name, inputs) in [
        ("main", vec![]),
        ("cats", vec!["1"]),
        ("snacks", vec!["1", "4"]),
        ("snacks2", vec!["1", "4", "98"]),
        ("snacks3", vec!["1", "4", "98", "98"]),
        ("snacks3", vec!["1", "4", "98", "98", "98"]),
        ("qty", vec!["1", "4", "6"]),
        ("added", vec!["1", "4", "6", "99"]),
        ("cont", vec!["1", "4", "6", "99", "2"]),
        ("checkout", vec!["1", "4", "6", "99", "1"]),
        ("payer", vec!["1", "4", "6", "99", "1", "2"]),
        ("placed", vec!["1", "4", "6", "99", "1", "2", "0722000111"]),
    ] {
        phone.cart = Cart::default();
        phone.dial();
        let text = phone.presses(&inputs).to_owned();
        println!(
            "--- {name} ({})\n{text}\n",
            crate::gsm7::septets(&text).unwrap()
        );
    }
    phone.press("00");
    for (name, inputs) in [
        ("orders", vec!["3"]),
        ("order", vec!["3", "1"]),
        ("cart", vec!["2"]),
        ("help", vec!["5"]),
        ("lang", vec!["4"]),
        ("sw", vec!["4", "2"]),
    ] {
        phone.dial();
        let text = phone.presses(&inputs).to_owned();
        println!(
            "--- {name} ({})\n{text}\n",
            crate::gsm7::septets(&text).unwrap()
        );
    }
}
