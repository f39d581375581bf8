// townsquare web client: plain ES modules, no build step, no dependency.
// Views: sign-in, chat (/), admin (/admin). Exactly one is visible at a time.
import { Admin } from "./admin.js";
import { api } from "./api.js";
import { Chat } from "./chat.js";
import { $, $$, errorMessage } from "./dom.js";
import { RoomDialogs } from "./rooms.js";
import * as session from "./session.js";
import { Live } from "./socket.js";

const STATUS_TEXT = { connected: "Connected", connecting: "Connecting…", offline: "Offline" };

let me = null;
let starting = null;
let toastTimer = null;

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

function setView(view) {
  document.body.dataset.view = view;
  $("#signin").hidden = view !== "signin";
  $("#chat").hidden = view !== "chat";
  $("#admin").hidden = view !== "admin";
  const signedIn = view !== "signin" && view !== "loading";
  // Chat and Admin are the only places: the menu is for admins alone.
  $("#nav").hidden = !signedIn || !me?.is_admin;
  $("#account").hidden = !signedIn;
  $("#status").hidden = !signedIn;
  for (const link of $$("#nav a")) {
    link.setAttribute("aria-current", link.dataset.nav === view ? "page" : "false");
  }
}

function route() {
  if (!me) return;
  if (location.pathname === "/admin") {
    setView("admin");
    admin.show(me).catch((error) => toast(errorMessage(error)));
  } else {
    admin.hide();
    setView("chat");
  }
}

function navigate(path) {
  if (location.pathname !== path) history.pushState(null, "", path);
  route();
}

// Signed in (this tab, another tab, or a restored session): load the account and go.
function signedIn() {
  if (me || starting) return starting;
  starting = (async () => {
    me = await api("GET", "/me");
    $("#whoami").textContent = me.name;
    $("#admin-link").hidden = !me.is_admin;
    // Nothing typed into the sign-in forms stays on the page.
    $("#login-form").reset();
    $("#signup-form").reset();
    $("#signin-error").textContent = "";
    route();
    live.start();
    await chat.start(me);
  })().finally(() => {
    starting = null;
  });
  return starting;
}

// Signed out (here, in another tab, or the session ended): forget everything.
function signedOut() {
  me = null;
  live.stop();
  chat.stop();
  admin.reset();
  dialogs.reset();
  $("#whoami").textContent = "";
  $("#admin-link").hidden = true;
  $("#toast").hidden = true;
  if (location.pathname !== "/") history.replaceState(null, "", "/");
  setView("signin");
}

session.on("signedOut", signedOut);
session.on("token", () => {
  if (!me) signedIn().catch(() => {});
});

async function submitting(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  $("#signin-error").textContent = "";
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
  signedOut();
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || !me) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", route);

(async () => {
  try {
    if (await session.restore()) {
      await signedIn();
      return;
    }
  } catch {
    // The server is unreachable: show the sign-in form; it says so when used.
  }
  if (!me) setView("signin");
})();
