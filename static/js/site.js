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
