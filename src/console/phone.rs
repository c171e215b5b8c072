//! The web phone: a handset in the browser that walks the shop through a chosen gateway's real
//! USSD route, over loopback HTTP, with [`crate::gateway::phone::Phone`] (what `duka dial` and
//! the gateway tests use), and shows the sandbox's M-Pesa PIN prompt and SMS inbox.
//!
//! The page's keypad posts to one JSON endpoint (`POST /console/api/phone`, or `/phone/api` in
//! the demo) with an action: `dial`, `send` (the typed input), `hangup`, `pin` (answer the open
//! prompt) or `poll`. Each answer carries the screen and, when the sandboxes run, the phone's
//! open prompts and inbox. Phones live in this process, keyed by a random id the page draws, at
//! most [`MAX_PHONES`] (the oldest is dropped).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Operator;
use super::page::frame;
use crate::gateway::phone::Phone;
use crate::msisdn::Msisdn;
use crate::sandbox::mpesa::{Outcome, PromptAnswer};
use crate::startup::AppState;

/// How many web phones one node keeps.
pub const MAX_PHONES: usize = 64;
const SHORTCODE: &str = "*384*12#";

type Shared = Arc<tokio::sync::Mutex<Phone>>;

/// The web phones in use.
pub struct Phones {
    ussd_base_url: String,
    phones: Mutex<VecDeque<(String, Shared)>>,
}

impl Phones {
    /// `ussd_base_url`: this server on loopback, with the USSD secret path segment if any.
    pub fn new(ussd_base_url: String) -> Self {
        Self {
            ussd_base_url,
            phones: Mutex::default(),
        }
    }

    fn get(&self, id: &str) -> Option<Shared> {
        let phones = self.phones.lock().unwrap_or_else(|e| e.into_inner());
        phones.iter().find(|(i, _)| i == id).map(|(_, p)| p.clone())
    }

    fn put(&self, id: &str, phone: Phone) -> Shared {
        let shared = Arc::new(tokio::sync::Mutex::new(phone));
        let mut phones = self.phones.lock().unwrap_or_else(|e| e.into_inner());
        phones.retain(|(i, _)| i != id);
        if phones.len() >= MAX_PHONES {
            phones.pop_front();
        }
        phones.push_back((id.to_owned(), shared.clone()));
        shared
    }
}

/// One press of the web phone.
#[derive(Debug, Deserialize)]
pub struct Press {
    id: String,
    action: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    input: String,
}

fn bad(why: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": why.into() })),
    )
        .into_response()
}

/// `POST /console/api/phone` (signed in; the CSRF header is checked by [`super::auth::require`]).
pub async fn api(State(app): State<AppState>, Json(press): Json<Press>) -> Response {
    handle(&app, press).await
}

/// `POST /phone/api`, the demo's open web phone (loopback only): same origin required.
pub async fn api_open(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(press): Json<Press>,
) -> Response {
    if !super::auth::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused").into_response();
    }
    handle(&app, press).await
}

async fn handle(app: &AppState, press: Press) -> Response {
    let Some(console) = app.console.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if press.id.len() < 8 || press.id.len() > 64 {
        return bad("id: 8 to 64 characters");
    }
    let mut screen = None;
    let phone = if press.action == "dial" {
        let Some(gateway) = crate::gateway::by_name(&press.gateway) else {
            return bad(format!("gateway: one of {}", crate::gateway::names()));
        };
        let msisdn = match Msisdn::parse(&press.phone) {
            Ok(m) => m,
            Err(e) => return bad(format!("phone: {e}")),
        };
        if let Some(mpesa) = &app.sandboxes.mpesa {
            // A person answers this phone's PIN prompts on the web phone.
            mpesa.set_outcome_for(&msisdn, Outcome::interactive());
        }
        let phone = Phone::new(
            &console.phones.ussd_base_url,
            gateway,
            msisdn,
            SHORTCODE,
            "63902",
            Duration::from_secs(10),
        );
        let shared = console.phones.put(&press.id, phone);
        let session = format!("web{}", &super::auth::random_hex()[..16]);
        screen = Some(shared.lock().await.dial(&session, Vec::new()).await);
        shared
    } else {
        match console.phones.get(&press.id) {
            Some(phone) => phone,
            None if press.action == "poll" => return Json(json!({})).into_response(),
            None => return bad("dial first"),
        }
    };
    let mut phone = phone.lock().await;
    match press.action.as_str() {
        "dial" | "poll" => {}
        "send" => screen = Some(phone.press(&press.input).await),
        "hangup" => {
            let _ = phone.hang_up(true).await;
        }
        "pin" => {
            if let Some(mpesa) = &app.sandboxes.mpesa {
                let open = mpesa
                    .prompts()
                    .into_iter()
                    .find(|p| p.phone == phone.msisdn);
                if let Some(prompt) = open {
                    let id = prompt.checkout_request_id.clone();
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    let _ = crate::fixtures::replay::poll_until_async(deadline, || {
                        crate::fixtures::replay::push_noted(&app.shop, &id)
                    })
                    .await;
                    let answer = if press.input.is_empty() {
                        PromptAnswer::Cancel
                    } else {
                        PromptAnswer::Pin(press.input.clone())
                    };
                    let _ = mpesa.answer_prompt(&id, answer);
                }
            }
        }
        other => return bad(format!("action {other:?}: dial, send, hangup, pin or poll")),
    }
    let mut answer = json!({ "gateway": phone.gateway().name() });
    if let Some(screen) = screen {
        match screen {
            Ok(reply) => {
                answer["screen"] = reply.text.into();
                answer["end"] = reply.end.into();
            }
            Err(e) => answer["error"] = e.to_string().into(),
        }
    }
    if let Some(mpesa) = &app.sandboxes.mpesa {
        let prompts: Vec<Value> = mpesa
            .prompts()
            .iter()
            .filter(|p| p.phone == phone.msisdn)
            .map(|p| json!({ "id": p.checkout_request_id, "text": p.text() }))
            .collect();
        answer["prompts"] = prompts.into();
        answer["pin_hint"] = mpesa.pin().into();
    }
    if let Some(sms) = &app.sandboxes.sms {
        let inbox: Vec<Value> = sms
            .inbox(&phone.msisdn)
            .iter()
            .map(|m| json!({ "text": m.text, "at": m.received_at.to_rfc3339() }))
            .collect();
        answer["inbox"] = inbox.into();
    }
    Json(answer).into_response()
}

/// `GET /console/phone`.
pub async fn page_signed_in(Extension(operator): Extension<Operator>) -> Response {
    frame(
        "Web phone",
        Some(&operator.csrf),
        handset(&super::at("/console/api/phone"), &operator.csrf),
    )
    .into_response()
}

/// `GET /phone` in the demo.
pub async fn page_open() -> Response {
    frame("Web phone", None, handset(&super::at("/phone/api"), "")).into_response()
}

const HANDSET_CSS: &str = r"
.handset{width:260px;background:#222;border-radius:28px;padding:22px 16px;box-shadow:0 4px 18px #0005;display:inline-block;vertical-align:top}
.screen{background:#cfe8cf;font-family:monospace;font-size:13px;min-height:190px;padding:8px;border-radius:6px;white-space:pre-wrap;word-wrap:break-word}
.entry{width:100%;box-sizing:border-box;margin:8px 0;font-family:monospace}
.keys{display:grid;grid-template-columns:repeat(3,1fr);gap:6px}
.keys button{padding:10px 0;border-radius:10px;border:0;background:#444;color:#fff;font-size:16px}
.keys .call{background:#16a34a}.keys .end{background:#dc2626}
.side{display:inline-block;vertical-align:top;margin-left:1.5rem;max-width:28rem}
.prompt{background:#fff7d6;padding:.5rem;border:1px solid #e5c100;margin:.3rem 0}
.sms{background:#fff;padding:.4rem;border:1px solid #ccd;margin:.3rem 0;white-space:pre-wrap}
";

fn handset(api: &str, csrf: &str) -> Markup {
    html! {
        style { (PreEscaped(HANDSET_CSS)) }
        h1 { "Web phone" }
        p {
            "Gateway "
            select id="gateway" {
                @for gateway in crate::gateway::GATEWAYS { option value=(gateway.name()) { (gateway.name()) } }
            }
            " phone " input id="msisdn" value="0712345678" size="12";
        }
        div.handset {
            div.screen id="screen" { "Press the green key to dial " (SHORTCODE) }
            input.entry id="entry" autocomplete="off";
            div.keys {
                @for key in ["1","2","3","4","5","6","7","8","9","*","0","#"] {
                    button type="button" data-key=(key) { (key) }
                }
                button.call type="button" id="call" { "☎ / OK" }
                button type="button" id="clear" { "⌫" }
                button.end type="button" id="end" { "End" }
            }
        }
        div.side {
            h2 { "M-Pesa prompt" }
            div id="prompts" { "none" }
            h2 { "SMS inbox" }
            div id="inbox" { "empty" }
        }
        script {
            (PreEscaped(format!("const API={api:?}, CSRF={csrf:?};")))
            (PreEscaped(PHONE_JS))
        }
    }
}

/// The keypad: builds the typed input, posts each action, draws screen, prompt and inbox.
const PHONE_JS: &str = r"
(function(){
  const id=Array.from(crypto.getRandomValues(new Uint8Array(12)),b=>b.toString(16).padStart(2,'0')).join('');
  const $=s=>document.getElementById(s); let inCall=false;
  async function post(body){
    body.id=id; body.gateway=$('gateway').value; body.phone=$('msisdn').value;
    const r=await fetch(API,{method:'POST',credentials:'same-origin',headers:{'content-type':'application/json','x-csrf-token':CSRF},body:JSON.stringify(body)});
    const j=await r.json(); draw(j); return j;
  }
  function draw(j){
    if(j.error){$('screen').textContent='Error: '+j.error; inCall=false;}
    if(j.screen!==undefined){$('screen').textContent=j.screen; inCall=!j.end;}
    if(j.prompts){const p=$('prompts'); p.innerHTML='';
      if(!j.prompts.length){p.textContent='none';}
      j.prompts.forEach(x=>{const d=document.createElement('div'); d.className='prompt'; d.textContent=x.text;
        const i=document.createElement('input'); i.type='password'; i.className='pin'; i.placeholder='PIN ('+j.pin_hint+')'; i.size=6;
        const b=document.createElement('button'); b.className='send-pin'; b.textContent='Send';
        b.onclick=()=>post({action:'pin',input:i.value});
        d.append(document.createElement('br'),i,b); p.append(d);});}
    if(j.inbox){const b=$('inbox'); b.innerHTML=''; if(!j.inbox.length){b.textContent='empty';}
      j.inbox.forEach(m=>{const d=document.createElement('div'); d.className='sms'; d.textContent=m.text; b.append(d);});}
  }
  document.querySelectorAll('[data-key]').forEach(k=>k.onclick=()=>{$('entry').value+=k.dataset.key;});
  $('clear').onclick=()=>{$('entry').value=$('entry').value.slice(0,-1);};
  $('call').onclick=()=>{ if(inCall){const v=$('entry').value; $('entry').value=''; post({action:'send',input:v});}
    else {$('entry').value=''; post({action:'dial'});} };
  $('entry').addEventListener('keydown',e=>{if(e.key==='Enter'){$('call').click();}});
  $('end').onclick=()=>{inCall=false; post({action:'hangup'}); $('screen').textContent='Call ended';};
  setInterval(()=>{post({action:'poll'}).catch(()=>{});},1500);
})();
";
