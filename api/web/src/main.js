// The console's entry: Vue 3 with the Element Plus components it uses (registered one by
// one, so the bundle carries only those) in Element Plus's dark theme (a control room's
// wall), and the app's own sheet on top.
import { createApp } from "vue";
import { ElButton, ElConfigProvider, ElRadioButton, ElRadioGroup, ElTag, ElTimeline, ElTimelineItem } from "element-plus";
import "element-plus/theme-chalk/base.css";
import "element-plus/theme-chalk/el-button.css";
import "element-plus/theme-chalk/el-tag.css";
import "element-plus/theme-chalk/el-radio-group.css";
import "element-plus/theme-chalk/el-radio-button.css";
import "element-plus/theme-chalk/el-timeline.css";
import "element-plus/theme-chalk/el-timeline-item.css";
import "element-plus/theme-chalk/dark/css-vars.css";
import "./style.css";
import App from "./App.vue";
import { lang } from "./i18n.js";

document.documentElement.lang = lang.value ? "en" : "zh-CN";
const app = createApp(App);
for (const c of [ElButton, ElConfigProvider, ElRadioButton, ElRadioGroup, ElTag, ElTimeline, ElTimelineItem]) app.component(c.name, c);
app.mount("#app");
