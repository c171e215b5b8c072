//! The console's page frame and its small shared pieces (navigation, the sign-in form).

use maud::{html, Markup, PreEscaped, DOCTYPE};

const STYLE: &str = r"
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#14532d;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none}#shop{background:#fff;color:#14532d;border-radius:.3rem;padding:0 .4rem;font-weight:600}header form{margin-left:auto}
main{padding:1rem;max-width:72rem;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #dde;padding:.35rem .5rem;text-align:left}
.state{padding:.1rem .4rem;border-radius:.3rem;background:#eef}
.paid{background:#d1fae5}.failed,.expired{background:#fee2e2}.awaiting_payment{background:#fef9c3}
.flag{background:#fde68a;padding:.1rem .4rem;border-radius:.3rem;margin-right:.2rem}
.error{color:#b91c1c}
pre{white-space:pre-wrap;word-break:break-all;background:#fff;padding:.4rem}
";

/// A page of the console, with its navigation when signed in (`csrf` is the session's token).
pub fn frame(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    // Which shop this is, when one Duka serves several: the header and the tab say so.
    let shop = super::shop_id();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title {
                    (title)
                    @if let Some(shop) = &shop { " · " (shop) }
                    " · Duka console"
                }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "Duka" }
                    @if let Some(shop) = &shop {
                        span #shop { (shop) }
                    }
                    @if let Some(csrf) = csrf {
                        a href=(super::at("/console")) { "Orders" }
                        a href=(super::at("/console/attention")) { "Needs attention" }
                        a href=(super::at("/console/funnel")) { "Funnel" }
                        a href=(super::at("/console/catalog")) { "Catalog" }
                        a href=(super::at("/console/phone")) { "Web phone" }
                        form method="post" action=(super::at("/console/sign-out")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button id="sign-out" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page, with what went wrong last time.
pub fn sign_in(problem: Option<&str>) -> Markup {
    frame(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(problem) = problem { p.error id="problem" { (problem) } }
            form method="post" action=(super::at("/console/sign-in")) {
                label { "Password " input id="password" type="password" name="password" autofocus; }
                " "
                button id="sign-in" type="submit" { "Sign in" }
            }
        },
    )
}
