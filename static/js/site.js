// Copy-link share buttons. Without JavaScript they stay plain links to the post.
document.addEventListener("click", async (event) => {
  const link = event.target.closest("[data-copy-link]");
  if (!link || !navigator.clipboard) return;
  event.preventDefault();
  const status = link.closest(".share")?.querySelector(".share__status");
  try {
    await navigator.clipboard.writeText(link.href);
    if (status) status.textContent = "Link copied to the clipboard.";
  } catch {
    if (status) status.textContent = "Could not copy; the link is: " + link.href;
  }
});

// Contact form attribution: the page the form was sent from and what brought the reader to it.
for (const input of document.querySelectorAll("[data-page-url]")) input.value = location.href;
for (const input of document.querySelectorAll("[data-page-referrer]")) input.value = document.referrer;

// After a failed submission, move focus to the summary of problems so it is read out first.
document.querySelector("[data-error-summary]")?.focus();

// A form shown for the first time may come from a cache that gave every reader the same token,
// and a token sends one message: when the reader starts on the form, it takes a token of its
// own. If that fails (offline, site down), the page's token still sends one message.
for (const form of document.querySelectorAll("[data-contact-form][data-token-url]")) {
  form.addEventListener("focusin", () => takeOwnToken(form), { once: true });
}

// The new token keeps the time the page was shown, from which the spam check counts.
async function takeOwnToken(form) {
  const token = form.elements["contact-rendered_at"];
  const url = new URL(form.dataset.tokenUrl, location.href);
  url.searchParams.set("shown", token.value);
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.ok) token.value = (await response.json()).token;
  } catch {
    // Keep the page's token.
  }
}
