// The console's build: Vue 3 single-file components, Element Plus and ECharts bundled into
// dist/ (served by the API at /console/; ignored by git, built by `make setup`).
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

export default defineConfig({
  base: "/console/",
  plugins: [vue()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1500 },
  test: { environment: "node", include: ["src/**/*.test.js"] },
});
