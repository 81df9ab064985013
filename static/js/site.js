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
