"use strict";
window.addEventListener("hashchange", () => window.D.route());
window.D.route();
