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

// A form shown for the first time may come from a cache, which gave every reader the same token,
// dated when the copy was made. When the form comes into view (or is focused first), the script
// takes a token of the reader's own, dated then, so the spam check counts from when this reader
// could start typing. If that fails (offline, site down), the page's token still sends the form.
for (const form of document.querySelectorAll("[data-contact-form][data-token-url]")) {
  let observer = null;
  const takeOnce = () => {
    observer?.disconnect();
    form.removeEventListener("focusin", takeOnce);
    takeOwnToken(form);
  };
  if ("IntersectionObserver" in window) {
    observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) takeOnce();
    });
    observer.observe(form);
  }
  form.addEventListener("focusin", takeOnce);
}

async function takeOwnToken(form) {
  const token = form.elements["contact-rendered_at"];
  try {
    const response = await fetch(form.dataset.tokenUrl, { headers: { Accept: "application/json" } });
    if (response.ok) token.value = (await response.json()).token;
  } catch {
    // Keep the page's token.
  }
}
