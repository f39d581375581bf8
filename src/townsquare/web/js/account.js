// Email verification as a person meets it: the banner over every page while the
// signed-in account's address is not verified (with "send a new link"), the page a
// mailed link opens (#/verify?token=...), signed in or not, and noticing a
// verification made elsewhere: another tab at once, another device within a poll.
import { api } from "./api.js";
import { $, errorMessage } from "./dom.js";

const POLL_MS = 30000; // GET /me while unverified and on screen
const CHECK_AFTER_MS = 5000; // on focus, unless checked this recently
const channel = "BroadcastChannel" in window ? new BroadcastChannel("townsquare-account") : null;

// "42 seconds", "3 minutes", "2 hours": how long until a limit lets go.
export function waitText(seconds) {
  if (!seconds || seconds < 90) return `${Math.max(1, Math.round(seconds || 60))} seconds`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} minutes`;
  return `${Math.round(seconds / 3600)} hours`;
}

export class Verification {
  // reload(): read GET /me again and apply it (it calls update()). done(): leave the
  // page of a link for the chat or the sign-in form.
  constructor({ reload, done }) {
    this.reload = reload;
    this.done = done;
    this.me = null;
    this.timer = null;
    this.checkedAt = 0;
    this.outcome = null; // the page of a link: null while checking, else {kind, detail}
    $("#resend").addEventListener("click", () => this.resend($("#resend"), $("#resend-state")));
    $("#verify-resend").addEventListener("click", () => this.resend($("#verify-resend"), $("#verify-resend-state")));
    $("#verify-continue").addEventListener("click", () => this.done());
    $("#verify-retry").addEventListener("click", () => this.verify(this.token));
    channel?.addEventListener("message", ({ data }) => {
      if (data?.type === "verified") this.check({ now: true });
    });
    document.addEventListener("visibilitychange", () => this.check());
    window.addEventListener("focus", () => this.check());
  }

  // The signed-in account (null: signed out).
  update(me) {
    this.me = me;
    const pending = Boolean(me && !me.email_verified);
    $("#verify-banner").hidden = !pending;
    $("#verify-banner-text").textContent = pending
      ? `Follow the link we sent to ${me.email}.`
      : "";
    if (!pending) this.say($("#resend-state"), "");
    this.schedule();
    if (this.outcome) this.render();
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.me && !this.me.email_verified) this.timer = setTimeout(() => this.check({ now: true }), POLL_MS);
  }

  async check({ now = false } = {}) {
    if (!this.me || this.me.email_verified || document.visibilityState !== "visible") return;
    if (!now && Date.now() - this.checkedAt < CHECK_AFTER_MS) return;
    this.checkedAt = Date.now();
    try {
      await this.reload();
    } catch {
      this.schedule(); // offline: the next poll asks again
    }
  }

  say(element, text, tone = "") {
    element.textContent = text;
    element.dataset.tone = tone;
  }

  async resend(button, state) {
    if (!this.me) return;
    button.disabled = true;
    this.say(state, "Sending…");
    try {
      await api("POST", "/me/verification-email");
      this.say(state, `A new link is on its way to ${this.me.email}. It can take a minute to arrive.`, "ok");
    } catch (error) {
      if (error.status === 409) {
        this.say(state, "Your email address is already verified.", "ok");
        await this.reload().catch(() => {});
      } else if (error.status === 429) {
        const wait = waitText(error.retryAfter);
        this.say(state, `You asked for several links recently. Try again in ${wait}, or use the latest link you received.`, "error");
      } else {
        this.say(state, `No link was sent: ${errorMessage(error)}.`, "error");
      }
    } finally {
      button.disabled = false;
    }
  }

  // -- the page of a mailed link ----------------------------------------------------

  async verify(token) {
    this.token = token;
    this.outcome = null;
    this.say($("#verify-resend-state"), "");
    this.render();
    if (!token) {
      this.outcome = { kind: "invalid" };
      this.render();
      return;
    }
    try {
      await api("POST", "/auth/verify-email", { json: { token }, auth: false });
      this.outcome = { kind: "verified" };
      channel?.postMessage({ type: "verified" });
      if (this.me) await this.reload().catch(() => {});
    } catch (error) {
      // 404: never mailed, expired or used (the API does not say which); 422: not a
      // token at all. Anything else (offline, 5xx) may work on a second try.
      const invalid = error.status === 404 || error.status === 422;
      this.outcome = invalid ? { kind: "invalid" } : { kind: "failed", detail: errorMessage(error) };
    }
    this.render();
  }

  render() {
    const state = $("#verify-state");
    const signedIn = Boolean(this.me);
    const verified = Boolean(this.me?.email_verified);
    const outcome = this.outcome;
    let text = "Checking your link…";
    let tone = "";
    if (outcome?.kind === "verified") {
      text = "Your email address is verified. Thank you!";
      tone = "ok";
    } else if (outcome?.kind === "invalid" && verified) {
      text = "This link was already used: your email address is verified.";
      tone = "ok";
    } else if (outcome?.kind === "invalid") {
      text = signedIn
        ? "This link is invalid, expired or already used. Ask for a new one below."
        : "This link is invalid, expired or already used. Log in to ask for a new one.";
      tone = "error";
    } else if (outcome?.kind === "failed") {
      text = `Your address could not be verified just now: ${outcome.detail}. Try again in a moment.`;
      tone = "error";
    }
    this.say(state, text, tone);
    $("#verify-resend").hidden = !(outcome?.kind === "invalid" && signedIn && !verified);
    $("#verify-retry").hidden = outcome?.kind !== "failed";
    const button = $("#verify-continue");
    button.hidden = outcome === null;
    button.textContent = signedIn ? "Go to the chat" : "Log in";
  }

  leave() {
    this.outcome = null;
    this.token = null;
  }
}
