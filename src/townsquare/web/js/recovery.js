// A forgotten password: "Forgot password?" on the sign-in view asks for the address
// and always answers the same way (the API does not tell whether an account uses it),
// and the page a reset mail opens (#/reset?token=...) sets the new password, which
// ends every session of the account.
import { api } from "./api.js";
import { waitText } from "./account.js";
import { $, errorMessage } from "./dom.js";

const INVALID_LINK = "This link is invalid, expired or already used. Ask for a new one.";

async function resetRequest(email) {
  await api("POST", "/auth/password-reset", { json: { email }, auth: false });
}

function requestError(error) {
  if (error.status === 429) return `Too many requests from here just now. Try again in ${waitText(error.retryAfter)}.`;
  if (error.status === 422) return "Enter a valid email address.";
  return `No link was sent: ${errorMessage(error)}.`;
}

// The same words whether or not an account uses the address.
const sentText = (email) =>
  `If an account uses ${email}, a link to choose a new password is on its way there. It works once, for a limited time. Nothing in a few minutes? Check the spam folder, or ask again.`;

export class Recovery {
  // me(): the signed-in account or null. resetDone(): the password was changed.
  // askAgain(): leave the reset page for "Forgot password?" (signed out).
  constructor({ me, resetDone, askAgain, cancel }) {
    this.me = me;
    this.token = null;
    $("#forgot-open").addEventListener("click", () => this.showForgot());
    $("#forgot-back").addEventListener("click", () => this.showLogin({ focus: true }));
    $("#forgot-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.requestLink(event.target);
    });
    $("#reset-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.setPassword(event.target).then((changed) => changed && resetDone());
    });
    $("#reset-form").elements.repeat.addEventListener("input", () => $("#reset-form").elements.repeat.setCustomValidity(""));
    $("#reset-ask").addEventListener("click", () => (this.me() ? this.askForMe() : askAgain()));
    $("#reset-cancel").addEventListener("click", () => cancel());
  }

  // -- "Forgot password?" -------------------------------------------------------------

  showForgot() {
    const email = $("#login-form").elements.email.value;
    const form = $("#forgot-form");
    form.reset();
    form.hidden = false;
    form.elements.email.value = email;
    $("#forgot-done").textContent = "";
    $("#forgot-error").textContent = "";
    $("#login-card").hidden = true;
    $("#forgot").hidden = false;
    $("#signin-error").textContent = "";
    form.elements.email.focus();
  }

  showLogin({ focus = false } = {}) {
    $("#forgot").hidden = true;
    $("#login-card").hidden = false;
    $("#forgot-form").reset();
    $("#forgot-done").textContent = "";
    $("#forgot-error").textContent = "";
    if (focus) $("#login-form").elements.email.focus();
  }

  async requestLink(form) {
    const email = form.elements.email.value.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    $("#forgot-error").textContent = "";
    try {
      await resetRequest(email);
      form.hidden = true;
      $("#forgot-done").textContent = sentText(email);
      $("#forgot-back").focus();
    } catch (error) {
      $("#forgot-error").textContent = requestError(error);
    } finally {
      button.disabled = false;
    }
  }

  // -- the page of a reset link -------------------------------------------------------

  open(token) {
    this.token = token;
    const form = $("#reset-form");
    form.reset();
    form.hidden = !token;
    $("#reset-error").textContent = token ? "" : INVALID_LINK;
    $("#reset-sent").textContent = "";
    $("#reset-ask").hidden = Boolean(token);
  }

  focus() {
    if (this.token) $("#reset-form").elements.password.focus();
    else $("#reset-ask").focus();
  }

  leave() {
    this.token = null;
    $("#reset-form").reset();
  }

  async setPassword(form) {
    const { password, repeat } = form.elements;
    $("#reset-error").textContent = "";
    if (password.value !== repeat.value) {
      repeat.setCustomValidity("The two passwords differ");
      $("#reset-error").textContent = "The two passwords differ: type the same new password twice.";
      repeat.focus();
      return false;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/auth/password-reset/confirm", {
        json: { token: this.token, new_password: password.value },
        auth: false,
      });
      this.leave();
      return true;
    } catch (error) {
      if (error.status === 404) {
        // Used, expired or never mailed: this link is done with.
        this.token = null;
        form.reset();
        form.hidden = true;
        $("#reset-error").textContent = INVALID_LINK;
        $("#reset-ask").hidden = false;
        $("#reset-ask").focus();
      } else {
        $("#reset-error").textContent = `The password was not changed: ${errorMessage(error)}`;
      }
      return false;
    } finally {
      button.disabled = false;
    }
  }

  // Signed in (a session on this browser) with a spent link: mail a new one to the
  // account's own address, right here.
  async askForMe() {
    const button = $("#reset-ask");
    button.disabled = true;
    try {
      const { email } = this.me();
      await resetRequest(email);
      $("#reset-error").textContent = "";
      $("#reset-sent").textContent = sentText(email);
      button.hidden = true;
    } catch (error) {
      $("#reset-error").textContent = requestError(error);
    } finally {
      button.disabled = false;
    }
  }
}
