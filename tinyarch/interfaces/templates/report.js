"use strict";
// Errors show on the page itself, so a headless browser's DOM dump reveals them.
window.addEventListener("error", (event) => {
  const box = document.getElementById("js-errors");
  box.hidden = false;
  box.textContent += "script error: " + event.message + "\n";
});
(() => {
  const agent = document.getElementById("agent-filter");
  const errorsOnly = document.getElementById("errors-filter");
  const groups = Array.from(document.querySelectorAll("details.iter"));
  const apply = () => {
    let total = 0;
    for (const group of groups) {
      let shown = 0;
      for (const step of group.querySelectorAll(".step")) {
        const visible =
          (agent.value === "" || step.dataset.agent === agent.value) &&
          (!errorsOnly.checked || step.dataset.error === "1");
        step.hidden = !visible;
        shown += visible ? 1 : 0;
      }
      group.hidden = shown === 0;
      group.querySelector(".shown").textContent = String(shown);
      total += shown;
    }
    document.getElementById("trace-count").textContent = String(total);
  };
  agent.addEventListener("change", apply);
  errorsOnly.addEventListener("change", apply);
  document.getElementById("expand-all").addEventListener("click", () => groups.forEach((g) => (g.open = true)));
  document.getElementById("collapse-all").addEventListener("click", () => groups.forEach((g) => (g.open = false)));
  apply();
  document.body.dataset.ready = "1";
})();
