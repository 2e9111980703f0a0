// Shows the capacity the platform suggests for the expected peak, as it is typed. The form works
// without this script; the suggestion is also shown after a submit.
(function () {
  const input = document.getElementById("peak_shoppers");
  const output = document.getElementById("suggestion");
  if (!input || !output) return;
  let pending;
  function update() {
    const peak = parseInt(input.value, 10);
    if (!(peak >= 1)) {
      output.textContent = "enter the expected peak to see the suggested capacity";
      return;
    }
    fetch("/suggest?peak_shoppers=" + peak)
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((s) => {
        output.textContent =
          s.minReplicas + " to " + s.maxReplicas + " storefront replicas (" + s.peakReplicas +
          " from the warm-up), admitting " + s.admissionRate + " shoppers a second, " +
          s.maxActive + " shopping at once";
      })
      .catch(() => {});
  }
  input.addEventListener("input", function () {
    clearTimeout(pending);
    pending = setTimeout(update, 200);
  });
})();

// Shows the chosen day's booked capacity when the date changes; without the script the form
// shows tomorrow's, or the day of the date last submitted.
(function () {
  const date = document.getElementById("date");
  const current = document.getElementById("calendar");
  if (!date || !current) return;
  date.addEventListener("change", function () {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date.value)) return;
    fetch("/calendar?date=" + date.value)
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        const shown = document.getElementById("calendar");
        if (shown) shown.outerHTML = html;
      })
      .catch(() => {});
  });
})();
