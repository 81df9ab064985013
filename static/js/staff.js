// Staff area behaviour. Every page works without it; it only adds conveniences.
document.querySelector("[data-error-summary]")?.focus();
