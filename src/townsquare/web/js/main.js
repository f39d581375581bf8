// townsquare web client: plain ES modules, no build step, no dependency.
// Views: sign-in, chat (/), admin (/admin), sessions (/sessions), and the pages mailed
// links open (#/verify?token=..., #/reset?token=...). Exactly one is visible at a time.
import { Verification } from "./account.js";
import { Admin } from "./admin.js";
import { api } from "./api.js";
import { Chat } from "./chat.js";
import { $, $$, errorMessage } from "./dom.js";
import { Menu } from "./menu.js";
import { Recovery } from "./recovery.js";
import { RoomDialogs } from "./rooms.js";
import * as session from "./session.js";
import { Sessions } from "./sessions.js";
import { Live } from "./socket.js";

const STATUS_TEXT = { connected: "Connected", connecting: "Connecting…", offline: "Offline" };
const VIEWS = ["signin", "chat", "admin", "sessions", "verify", "reset"];
const PAGES = { "/admin": "admin", "/sessions": "sessions" };
const SESSION_ENDED = "Your session has ended (logged out from another device, or the password changed). Log in again.";
const PASSWORD_CHANGED = "Your password was changed, and every session of your account has ended. Log in with the new password.";

let me = null;
let starting = null;
let toastTimer = null;
// "verify" or "reset" while the page of a mailed link is on screen (signed in or not).
let flow = null;

function toast(text) {
  const element = $("#toast");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, 6000);
}

const live = new Live({
  onFrame: (frame) => chat.handle(frame),
  onState: (state) => {
    const status = $("#status");
    status.dataset.state = state;
    status.textContent = STATUS_TEXT[state];
  },
  onSignedOut: () => signedOut(),
});
const chat = new Chat({ live, toast });
const dialogs = new RoomDialogs(chat);
const admin = new Admin({ toast });
const menu = new Menu($("#account-button"), $("#account-menu"));
const sessions = new Sessions({ ended: () => session.logout() });
const verification = new Verification({ reload: reloadMe, done: closeFlow });
const recovery = new Recovery({
  me: () => me,
  resetDone: passwordChanged,
  askAgain: () => {
    closeFlow();
    recovery.showForgot();
  },
  cancel: closeFlow,
});

function setView(view) {
  document.body.dataset.view = view;
  for (const name of VIEWS) $(`#${name}`).hidden = view !== name;
  const signedIn = me !== null;
  // Chat and Admin are the only places: the menu is for admins alone.
  $("#nav").hidden = !signedIn || !me.is_admin;
  $("#account").hidden = !signedIn;
  $("#status").hidden = !signedIn;
  menu.close();
  for (const link of $$("#nav a, #account-menu a")) {
    link.setAttribute("aria-current", link.dataset.nav === view ? "page" : "false");
  }
}

function route() {
  if (flow) {
    setView(flow);
    return;
  }
  if (!me) return;
  const page = PAGES[location.pathname] ?? "chat";
  if (page !== "admin") admin.hide();
  if (page !== "sessions") sessions.hide();
  setView(page);
  if (page === "admin") admin.show(me).catch((error) => toast(errorMessage(error)));
  if (page === "sessions") {
    sessions.show();
    $("#sessions h2").focus();
  }
}

function navigate(path) {
  leaveFlow();
  if (location.pathname !== path) history.pushState(null, "", path);
  route();
}

// -- the pages of mailed links ---------------------------------------------------------

// `#/verify?token=...` or `#/reset?token=...`, taken out of the address bar (and so out
// of the history) at once.
function takeLink() {
  const match = /^#\/(verify|reset)(?:\?(.*))?$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname);
  return { kind: match[1], token: new URLSearchParams(match[2] ?? "").get("token") };
}

function openLink({ kind, token }) {
  leaveFlow();
  flow = kind;
  admin.hide();
  sessions.hide();
  setView(kind);
  if (kind === "verify") {
    $("#verify-title").focus();
    verification.verify(token);
  } else {
    recovery.open(token);
    recovery.focus();
  }
}

function leaveFlow() {
  if (flow === "verify") verification.leave();
  if (flow === "reset") recovery.leave();
  flow = null;
}

function closeFlow() {
  leaveFlow();
  if (me) route();
  else setView("signin");
}

// The reset ended every session of the account, this browser's too if it had one.
async function passwordChanged() {
  leaveFlow();
  if (me) await session.logout("ended");
  setView("signin");
  notice(PASSWORD_CHANGED);
  $("#login-form").elements.email.focus();
}

function notice(text) {
  $("#signin-notice").textContent = text;
  $("#signin-notice").hidden = !text;
}

// -- signed in and out -----------------------------------------------------------------

function applyMe() {
  $("#whoami").textContent = me.name;
  $("#account-email").textContent = me.email;
  $("#admin-link").hidden = !me.is_admin;
  verification.update(me);
}

// Read the account again (its address was verified, here or elsewhere).
async function reloadMe() {
  if (!me) return;
  const fresh = await api("GET", "/me");
  if (!me || fresh.id !== me.id) return;
  const newlyVerified = fresh.email_verified && !me.email_verified;
  me = fresh;
  applyMe();
  if (newlyVerified) chat.verified();
}

// Signed in (this tab, another tab, or a restored session): load the account and go.
function signedIn() {
  if (me || starting) return starting;
  starting = (async () => {
    me = await api("GET", "/me");
    applyMe();
    // Nothing typed into the sign-in forms stays on the page.
    $("#login-form").reset();
    $("#signup-form").reset();
    $("#signin-error").textContent = "";
    notice("");
    recovery.showLogin();
    route();
    live.start();
    await chat.start(me);
  })().finally(() => {
    starting = null;
  });
  return starting;
}

// Signed out (here, in another tab, or the session ended): forget everything.
// `reason` is "ended" when the server ended the session, "logout" when a person here
// logged out.
function signedOut(reason) {
  me = null;
  live.stop();
  chat.stop();
  admin.reset();
  sessions.reset();
  dialogs.reset();
  verification.update(null);
  $("#whoami").textContent = "";
  $("#account-email").textContent = "";
  $("#admin-link").hidden = true;
  $("#toast").hidden = true;
  if (reason === "ended") notice(SESSION_ENDED);
  else if (reason === "logout") notice("");
  if (location.pathname !== "/") history.replaceState(null, "", "/");
  setView(flow ?? "signin");
}

session.on("signedOut", signedOut);
session.on("token", () => {
  if (!me) signedIn().catch(() => {});
});

async function submitting(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  $("#signin-error").textContent = "";
  notice("");
  try {
    await action(new FormData(form));
  } catch (error) {
    $("#signin-error").textContent = errorMessage(error);
  } finally {
    button.disabled = false;
  }
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(event.target, async (data) => {
    await session.login(data.get("email"), data.get("password"));
    await signedIn();
  });
});

$("#signup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitting(event.target, async (data) => {
    await api("POST", "/users", {
      json: { name: data.get("name"), email: data.get("email"), password: data.get("password") },
      auth: false,
    });
    await session.login(data.get("email"), data.get("password"));
    await signedIn();
  });
});

$("#logout").addEventListener("click", async () => {
  await session.logout();
  signedOut("logout");
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || !me) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", () => (flow ? closeFlow() : route()));
// A mailed link opened in a tab already showing the page changes only the fragment.
window.addEventListener("hashchange", () => {
  const link = takeLink();
  if (link) openLink(link);
});

(async () => {
  const link = takeLink();
  if (link) openLink(link);
  try {
    if (await session.restore()) {
      await signedIn();
      return;
    }
  } catch {
    // The server is unreachable: show the sign-in form; it says so when used.
  }
  if (!me) setView(flow ?? "signin");
})();
