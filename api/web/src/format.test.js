// The console's logic that is not layout: durations, deadlines, evidence, problems, words.
import { beforeEach, describe, expect, it } from "vitest";
import { lang, t, tAlert, tChange, tOrderEvent, inLang, WORDS } from "./i18n.js";
import { dueText, evidenceRows, fmtDur, incidents, metricFor, nextDue, parseFrame, problemText, dayIso, localNow, timeline, toCsv } from "./format.js";

beforeEach(() => { lang.value = 0; });

describe("durations as people on duty say them", () => {
  it("reads 10分43秒, 2小时5分, 3天4小时", () => {
    expect(fmtDur(643)).toBe("10分43秒");
    expect(fmtDur(2 * 3600 + 5 * 60 + 9)).toBe("2小时5分");
    expect(fmtDur(3 * 86400 + 4 * 3600)).toBe("3天4小时");
    expect(fmtDur(7)).toBe("7秒");
    expect(fmtDur(null)).toBe("—");
  });
  it("says English in English and keeps a sign", () => {
    lang.value = 1;
    expect(fmtDur(643)).toBe("10m 43s");
    expect(fmtDur(-61)).toBe("-1m 1s");
  });
});

describe("a work order's next deadline", () => {
  const o = { ack_due: "A", arrive_due: "B", resolve_due: "C" };
  it("follows the order's state", () => {
    expect(nextDue({ ...o, state: "dispatched" })).toEqual(["ack_due", "A"]);
    expect(nextDue({ ...o, state: "acknowledged" })).toEqual(["arrive_due", "B"]);
    expect(nextDue({ ...o, state: "acknowledged", arrive_due: null })).toEqual(["resolve_due", "C"]);
    expect(nextDue({ ...o, state: "on_site" })).toEqual(["resolve_due", "C"]);
    expect(nextDue({ ...o, state: "resolved" })).toEqual([null, null]);
  });
  it("counts down, then counts the overrun, red under two minutes", () => {
    const due = "2026-12-06T10:00:00Z", at = Date.parse(due);
    expect(dueText(due, at - 3723e3)).toEqual({ text: "剩余 1小时2分", soon: false });
    expect(dueText(due, at - 90e3)).toEqual({ text: "剩余 1分30秒", soon: true });
    expect(dueText(due, at + 61e3)).toEqual({ text: "超时 1分1秒", soon: true });
  });
});

describe("evidence as a table", () => {
  it("shows times in Shanghai, booleans in words and readings as rows", () => {
    const rows = evidenceRows({ at: "2026-12-06T02:00:00Z", car_ts: 1796522400, occupied: true,
      readings: [{ ts: 1796522400, floor: 3 }, { ts: 1796522401, floor: 3 }], nested: { a: 1 } });
    const byKey = Object.fromEntries(rows.map(r => [r.key, r.value]));
    expect(byKey.at.text).toContain("10:00:00");  // 02:00 UTC is 10:00 in Shanghai
    expect(byKey.occupied.text).toBe("是");
    expect(byKey.readings.keys).toEqual(["ts", "floor"]);
    expect(byKey.readings.rows).toHaveLength(2);
    expect(byKey.readings.rows[0][1].text).toBe("3");
    expect(byKey.nested.kv[0]).toEqual({ key: "a", value: { text: "1" } });
    expect(JSON.stringify(rows)).not.toContain("{\"a\"");
  });
});

describe("the metric an alert is charted on", () => {
  it("names the metric of the alert, or none for an event-only device", () => {
    expect(metricFor("fire.pressure_low", "fire", { pressure_mpa: 0.3 })).toBe("pressure_mpa");
    expect(metricFor("elevator.overspeed", "elevator", {})).toBe("speed_mps");
    expect(metricFor("fire.alarm", "fire", { ts: 1, seq: 2 })).toBe(null);  // a smoke detector
    expect(metricFor("elevator.trapped", "elevator", { floor: 3, ts: 1 })).toBe("floor");
  });
});

describe("words", () => {
  it("has no English in Chinese mode for the API's problems", () => {
    const e = { message: "Conflict: not possible now", body: { type: "https://smart-estate/problems/conflict" } };
    expect(problemText(e)).toBe("当前状态下不能执行此操作");
    expect(problemText({ message: "boom", body: {} })).toBe("操作失败");
    lang.value = 1;
    expect(problemText({ message: "boom", body: {} })).toBe("boom");
  });
  it("says the control room's words: 签收 for acknowledging, 静默 for silences", () => {
    expect(t("acknowledge")).toBe("签收");
    expect(t("silences")).toBe("静默");
    expect(tChange("acknowledge")).toBe("签收");
    expect(tAlert("elevator.trapped")).toBe("电梯困人");
    expect(inLang(WORDS, "no-such-key", "fallback")).toBe("fallback");
  });
  it("gives every word in both languages", () => {
    for (const [k, w] of Object.entries(WORDS)) {
      expect(w, k).toHaveLength(2);
      expect(w[0], k).not.toMatch(/^[a-z_]+$/);  // a Chinese word, not a code left behind
    }
  });
});

describe("days and the live stream", () => {
  it("takes days in Shanghai", () => {
    expect(dayIso(new Date("2026-12-05T17:00:00Z"))).toBe("2026-12-06");
    expect(localNow(0, Date.parse("2026-12-05T17:00:00Z"))).toBe("2026-12-06T01:00");
  });
  it("reads a server-sent event frame", () => {
    expect(parseFrame("id: 7\nevent: alert\ndata: {\"id\":1}")).toEqual({ id: "7", event: "alert", data: "{\"id\":1}" });
  });
});

describe("the board: one row per incident", () => {
  const al = (id, incident, severity, first_seen, extra = {}) => ({ id, incident_id: incident, severity, first_seen, state: "open", acknowledged_at: null, ...extra });
  it("groups an incident's alerts under its most severe, critical incidents first", () => {
    const rows = incidents([
      al(1, 10, "warning", "2026-12-06T01:00:00Z"),
      al(2, 10, "critical", "2026-12-06T01:00:05Z"),
      al(3, 11, "major", "2026-12-06T02:00:00Z", { acknowledged_at: "2026-12-06T02:01:00Z" }),
      al(4, null, "critical", "2026-12-06T00:00:00Z"),
    ]);
    expect(rows.map(r => r.lead.id)).toEqual([2, 4, 3]);
    expect(rows[0].alerts.map(a => a.id)).toEqual([2, 1]);
    expect(rows[0].first_seen).toBe("2026-12-06T01:00:00Z");  // the incident began with its first alert
    expect(rows[0].unacked.map(a => a.id)).toEqual([2, 1]);
    expect(rows[2].unacked).toEqual([]);
    expect(rows[1].key).toBe("alert-4");  // an alert of no incident stands alone
  });
});

describe("exports", () => {
  it("writes CSV that Excel opens in Chinese, quoting what needs it", () => {
    const csv = toCsv(["类型", "说明"], [["电梯困人", 'a "b", c'], ["火警", "line\nbreak"]]);
    expect(csv.startsWith("\ufeff类型,说明\r\n")).toBe(true);
    expect(csv).toContain('电梯困人,"a ""b"", c"');
    expect(csv).toContain('"line\nbreak"');
  });
});

describe("an incident's timeline", () => {
  it("merges the alert's changes, the order's events, missed deadlines and who was told, in time", () => {
    const alert = { changes: [{ at: "2026-12-06T01:00:00Z", change: "raise", actor: "engine", severity: "critical" },
      { at: "2026-12-06T01:02:00Z", change: "acknowledge", actor: "user:duty", severity: "critical" }] };
    const order = {
      events: [{ at: "2026-12-06T01:00:01Z", change: "dispatched", actor: "dispatch" },
        { at: "2026-12-06T01:06:00Z", change: "breach", actor: "supervise" },
        { at: "2026-12-06T01:08:00Z", change: "acknowledged", actor: "user:lifts" }],
      breaches: [{ deadline: "acknowledge", breached_at: "2026-12-06T01:06:00Z", escalated_to: "PF-HX" }],
      deliveries: [{ org_code: "EM-TS", target: "estate/v1/notify/EM-TS", channel: "mqtt", state: "sent", created_at: "2026-12-06T01:00:01Z", sent_at: "2026-12-06T01:00:02Z" }],
    };
    const got = timeline(alert, order, { change: tChange, orderEvent: tOrderEvent, t });
    expect(got.map(e => e.what)).toEqual([
      "产生", "派单", "通知 EM-TS 经 mqtt · 已送达", "签收", "超过 接单时限 · 升级至 PF-HX", "已接单",
    ]);
    expect(timeline(alert, null, { change: tChange, orderEvent: tOrderEvent, t })).toHaveLength(2);
  });
});
