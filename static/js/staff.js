// Staff area behaviour. Every page works without it; it only adds conveniences.
document.querySelector("[data-error-summary]")?.focus();

// Leads inbox: a "select all" box for the bulk actions. Without JavaScript it stays hidden
// and each lead's own box still works.
for (const all of document.querySelectorAll("[data-select-all]")) {
  const boxes = [...all.form.querySelectorAll('input[type="checkbox"][name="lead"]')];
  if (!boxes.length) continue;
  const sync = () => {
    const checked = boxes.filter((box) => box.checked).length;
    all.checked = checked === boxes.length;
    all.indeterminate = checked > 0 && checked < boxes.length;
  };
  all.hidden = false;
  all.addEventListener("change", () => {
    for (const box of boxes) box.checked = all.checked;
  });
  for (const box of boxes) box.addEventListener("change", sync);
  sync();
}
