// ESLint for the browser client (static/): plain ES modules run as they are
// served, no build step. `scripts/test` runs it (`npx eslint`).
import js from "@eslint/js";
import globals from "globals";

export default [
  {
    // Third-party files are served as their authors ship them.
    ignores: ["static/vendor/**", "node_modules/**", ".venv/**", "build/**", "data/**"],
  },
  js.configs.recommended,
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    rules: {
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
      eqeqeq: ["error", "always"],
      "no-implicit-globals": "error",
      "no-shadow": "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-throw-literal": "error",
      "no-console": "error",
    },
  },
  {
    files: ["eslint.config.js"],
    languageOptions: { sourceType: "module", globals: { ...globals.node } },
  },
];
