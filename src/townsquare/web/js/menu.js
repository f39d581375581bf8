// The account menu in the top bar: a disclosure button and the panel it opens (links
// and buttons, reached with Tab). Escape closes it and returns to the button; so do a
// click elsewhere, focus leaving it, and choosing one of its items.
export class Menu {
  constructor(button, panel) {
    this.button = button;
    this.panel = panel;
    const container = button.parentElement;
    button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    container.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.preventDefault();
        this.close({ focus: true });
      }
    });
    container.addEventListener("focusout", (event) => {
      if (event.relatedTarget && !container.contains(event.relatedTarget)) this.close();
    });
    panel.addEventListener("click", (event) => {
      if (event.target.closest("a, button")) this.close();
    });
    document.addEventListener("click", (event) => {
      if (this.isOpen && !container.contains(event.target)) this.close();
    });
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  open() {
    this.panel.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
  }

  close({ focus = false } = {}) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (focus) this.button.focus();
  }
}
