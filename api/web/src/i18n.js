// The console's words: Chinese first, English available (the choice is kept per browser).
import { ref } from "vue";

export const WORDS = {
  brand: ["智慧物业监测", "smart-estate"],
  offline: ["离线", "offline"], live: ["实时", "live"],
  sound_on: ["开启声音", "enable sound"], logout: ["退出", "log out"],
  login: ["登录", "Log in"], username: ["用户名", "User name"], password: ["密码", "Password"],
  login_failed: ["登录失败", "Login failed"],
  board: ["告警看板", "Alert board"], estates: ["小区概况", "Estates"], orders: ["工单", "Work orders"],
  silences: ["静默", "Silences"], fire: ["消防监管", "Fire inspection"],
  elevators: ["电梯监管", "Elevator supervision"], disclosure: ["维修资金公示", "Fund disclosure"],
  severity: ["级别", "Severity"], type: ["类型", "Type"], estate: ["小区", "Estate"],
  building: ["楼栋", "Building"], device: ["设备", "Device"], since: ["开始", "Since"],
  state: ["状态", "State"], action: ["操作", "Action"], acknowledge: ["签收", "Acknowledge"],
  acknowledged: ["已签收", "Acknowledged"], confirm_fire: ["确认火警", "Confirm fire"],
  false_alarm: ["误报", "False alarm"], cause: ["原因", "Cause"],
  cause_cooking: ["烹饪油烟", "cooking"], cause_steam: ["水蒸气", "steam"], cause_dust: ["粉尘", "dust"],
  cause_insects: ["昆虫", "insects"], cause_fault: ["设备故障", "device fault"], cause_test: ["测试", "test"],
  cause_malicious: ["恶意触发", "malicious"], cause_other: ["其他（须说明）", "other (say what)"],
  cause_note: ["说明", "note"],
  no_alerts: ["当前无告警", "No open alerts"], open_alerts: ["未恢复告警", "Open alerts"],
  critical: ["紧急", "Critical"], devices: ["设备数", "Devices"], online: ["在线", "Online"],
  live_orders: ["在办工单", "Live orders"], buildings: ["楼栋数", "Buildings"],
  shared: ["公共设施", "Shared equipment"], kind: ["类别", "Kind"], last_seen: ["最后上报", "Last seen"],
  latest: ["实时数据", "Live values"], history: ["历史曲线", "History"], metric: ["指标", "Metric"],
  zoom_hint: ["滚轮、双指或下方滑块缩放，双击还原", "Wheel, pinch or the slider to zoom, double-click to reset"],
  evidence: ["证据", "Evidence"], changes: ["处置记录", "Changes"], work_order: ["工单", "Work order"],
  assignee: ["责任单位", "Responsible"], ack_due: ["接单时限", "Acknowledge by"],
  arrive_due: ["到场时限", "On site by"], resolve_due: ["处置时限", "Resolve by"],
  remaining: ["剩余", "left"], overdue: ["超时", "overdue"], arrive: ["到场", "On site"],
  resolve: ["处置完成", "Resolved"], escalation: ["升级", "Escalation"],
  reason: ["原因", "Reason"], hours: ["小时", "Hours"], add: ["添加", "Add"], expire: ["结束", "End"],
  ends: ["结束时间", "Ends"], author: ["创建人", "Author"], alert_type: ["告警类型", "Alert type"],
  unconfirmed: ["未确认火警", "Unconfirmed fire alarms"], long_faults: ["长期未修复故障", "Faults open too long"],
  disabled_points: ["屏蔽点位", "Disabled points"], pressure: ["水压异常", "Pressure out of range"],
  notices: ["整改通知书", "Rectification notices"], number: ["编号", "Number"], problem: ["问题", "Problem"],
  deadline: ["期限", "Deadline"], open_for: ["持续", "Open for"], value: ["数值", "Value"],
  company: ["维保单位", "Maintenance company"], trapped: ["困人工单", "Trapped-passenger orders"],
  median_ack: ["接单中位时长", "Median acknowledge"], median_arrive: ["到场中位时长", "Median on site"],
  ack_time: ["接单用时", "To acknowledge"], arrive_time: ["到场用时", "To arrive"],
  breaches: ["超时次数", "Breaches"], fault_rate: ["每台告警数", "Alerts per lift"],
  overdue_items: ["维保/检验逾期", "Maintenance / inspection overdue"], item: ["事项", "Item"],
  due: ["到期", "Due"], repairs: ["应急维修", "Emergency repairs"], cost: ["金额", "Cost"],
  invoice: ["发票", "Invoice"], approval: ["批准", "Approval"], shares: ["分摊", "Shares"],
  unit: ["房号", "Unit"], share: ["分摊金额", "Share"], fund_report: ["年度资金报告", "Yearly fund report"],
  account: ["账户", "Account"], opening: ["期初", "Opening"], deposits: ["缴存", "Deposits"],
  interest: ["利息", "Interest"], closing: ["期末", "Closing"], none: ["无", "None"],
  days: ["天", "days"], back: ["返回", "Back"], loading: ["加载中…", "Loading…"],
  not_found: ["未找到或无权查看", "Not found, or not yours"], elevator: ["电梯", "Elevator"],
  drainage: ["排水", "Drainage"], water_supply: ["二次供水", "Water supply"], fire_kind: ["消防", "Fire"], muted: ["已静默", "silenced"],
  session_over: ["登录已过期，请重新登录", "Your session has ended: log in again"],
  public_hint: ["业主可查看：本小区应急维修及每户分摊", "For owners: emergency repairs and each home's share"],
  range: ["时间范围", "Range"], level: ["粒度", "Level"], period: ["统计周期", "Period"],
  notice_list: ["通知书列表", "Notices"], issue_notice: ["下发整改通知书", "Issue a rectification notice"],
  measures: ["整改措施", "Measures"], responsible_person: ["责任人", "Responsible person"],
  basis: ["依据", "Basis"], add_problem: ["增加一项问题", "Add a problem"], issue: ["下发", "Issue"],
  supervised: ["挂牌督办", "under supervision"], accept: ["验收销号", "Accept"], reject: ["退回", "Send back"],
  holds: ["回头看：未反弹", "Look-back: holds"], relapsed: ["回头看：反弹", "Look-back: relapsed"],
  rectify: ["报告整改", "Report rectified"], sign_for: ["签收", "Sign for it"], signed_for: ["签收", "Signed for"],
  issued_by: ["下发人", "Issued by"], seq: ["序号", "No."], look_back: ["回头看日期", "Look-back on"],
  time: ["时间", "Time"], change: ["事项", "Change"], actor: ["操作人", "By"], note: ["说明", "Note"],
  what_was_done: ["整改情况（做了什么）", "What was done"], what_was_found: ["情况说明", "What was found"],
  new_deadline: ["新的整改期限（YYYY-MM-DD）", "New deadline (YYYY-MM-DD)"],
  ledger: ["问题台账", "Problem ledger"], from: ["起", "From"], to: ["止", "To"], any: ["全部", "any"],
  authority: ["主管部门", "Authority"], auth_fire: ["消防", "Fire"], auth_market: ["市场监管", "Market supervision"],
  auth_housing: ["住建", "Housing"], auth_street: ["街道", "Street office"], general: ["综合", "General"],
  search: ["搜索", "Search"], search_words: ["输入关键词", "words to find"], search_hint: ["小区、位置、编码或单位", "estate, place, code or company"],
  all_estates: ["全部小区", "All estates"], all_types: ["全部类型", "All types"], all_severities: ["全部级别", "All severities"],
  load_more: ["加载更多", "Load more"], shown: ["显示", "Showing"], rule: ["规则", "Rule"], place: ["位置", "Place"],
  code: ["编码", "Code"], board_open: ["未恢复", "Open"], board_cleared: ["已恢复（历史）", "Cleared (history)"],
  board_all: ["全部", "All"], orders_live: ["在办", "Live"], orders_all: ["全部（含已办结）", "All (with closed)"],
  trapped_orders: ["困人工单数", "Trapped-passenger orders"], one_year: ["一年", "one year"],
  false_alarm_rates: ["误报统计", "False alarms"], alarms: ["报警", "Alarms"], confirmed: ["确认火警", "Confirmed"],
  false_alarms: ["误报", "False alarms"], false_rate: ["误报率", "False-alarm rate"], whole_estate: ["全小区", "whole estate"],
  timeline: ["处置经过", "Timeline"], src_alert: ["告警", "alert"], src_order: ["工单", "order"], told: ["通知", "told"],
  via: ["经", "via"], delivery_sent: ["已送达", "sent"], delivery_failed: ["发送失败", "failed"], delivery_pending: ["待发送", "pending"],
  escalated_to: ["升级至", "escalated to"], missed: ["超过", "missed"], actions: ["可执行操作", "Actions"],
  schematic: ["小区示意图", "Estate schematic"], normal: ["正常", "normal"],
  fundcase: ["维修资金案件", "Fund case"], fund_estimate: ["填报预算（提出申请）", "Submit the estimate (apply)"],
  fund_standing: ["按业主大会授权批准", "Approve under the owners' standing authorisation"],
  fund_repaired: ["报修复完成", "Report the repair done"], fund_review: ["审价", "Cost review"], fund_settle: ["拨付并公示", "Pay and disclose"],
  amount_yuan: ["金额（元）", "Amount (yuan)"], reviewed: ["审定金额", "Reviewed amount"], cost: ["实际费用", "Actual cost"],
  invoice_ref: ["发票号", "Invoice number"], description: ["情况说明", "Description"], accepted_by: ["验收方", "Accepted by"],
  case_standing_refused: ["授权范围外，转人工审批", "outside the standing authorisation"], case_objection: ["业主异议", "objection filed"],
  case_answered: ["异议已答复", "objection answered"], case_system: ["系统", "system"], case_reviewed: ["已审价", "cost reviewed"],
  objections_list: ["业主异议", "Objections"], answer: ["答复", "Answer"],
  export_xlsx: ["导出 Excel", "Export Excel"], export_csv: ["导出 CSV", "Export CSV"], source: ["来源", "Source"],
  source_notice: ["整改通知", "notice"], source_overdue: ["维保/检验逾期", "overdue"], source_breach: ["工单超时", "order breach"],
  responsible: ["责任单位/人", "Responsible"], maintenance_records: ["维保记录", "Maintenance records"],
  last_maintenance: ["上次维保", "Last maintenance"], next_maintenance: ["下次维保", "Next maintenance"],
  inspection_due: ["下次检验", "Next inspection"], ended: ["结束时间", "Ended"], started: ["开始时间", "Started"],
  technician: ["维保人员", "Technician"], result: ["结果", "Result"], findings: ["发现问题", "Findings"],
  photo: ["照片", "Photo"], submit: ["提交", "Submit"], record_visit: ["填写维保记录", "Record a visit"],
  myhome: ["我家的维修资金", "My home's fund"], no_home: ["此账号未绑定房屋", "This login names no home"],
  balance: ["余额", "Balance"], amount: ["金额", "Amount"], mv_deposit: ["缴存", "deposit"], mv_interest: ["利息", "interest"],
  mv_refund: ["退回", "refund"], mv_repair: ["维修分摊", "repair share"], disclosed_until: ["公示期至", "Disclosed until"],
  objections: ["异议", "Objections"], object: ["提出异议", "Object"], objection_hint: ["异议内容", "Your objection"],
  noticeboard: ["小区公示栏", "Noticeboard"], property_firm: ["物业服务企业", "Property firm"], phone: ["电话", "Phone"],
  lift_spending: ["本年度电梯维保费用", "Lift maintenance this year"],
  devicelist: ["设备列表", "Devices"], health: ["状况", "Health"], all_kinds: ["全部类别", "All kinds"],
  health_offline: ["离线", "offline"], health_alerts: ["有未恢复告警", "with open alerts"], health_never: ["从未上报", "never heard from"],
  export_all: ["导出全部 CSV", "Export all as CSV"], overdue_only: ["仅逾期", "overdue only"],
  drainage_stats: ["排水防涝统计", "Drainage statistics"], events: ["排水告警", "Drainage alerts"],
  events_in_rain: ["降雨时告警", "In rain"], events_dry: ["非降雨时告警", "In dry weather"],
  wet_hours: ["降雨小时数", "Wet hours"], pump_duty: ["水泵运行占比", "Pump duty"], sump_pits: ["集水坑", "Sump pits"],
  peak_level: ["最高水位", "Peak level"], by_type: ["告警构成", "By type"], per_estate: ["各小区", "Per estate"],
  rain_rule: ["降雨按集水坑水泵运行判断：某小时内水泵运行超过 20% 即计为降雨小时（平时渗水约 3%），该小时及前后各一小时内产生的告警计为降雨时告警。",
    "Rain is read off the sump pumps: an hour in which they ran over 20% of the time is a wet hour (seepage alone runs them about 3%); alerts in it or the hour either side count as in rain."],
  lift_faults: ["各电梯故障统计", "Faults per lift"], alerts_count: ["告警数", "Alerts"], trapped_count: ["困人次数", "Trapped"],
  fundaccounts: ["维修资金账户", "Fund accounts"], journal: ["资金明细账", "Journal"], opened: ["开户时间", "Opened"],
  entry: ["凭证号", "Entry"], counterparty: ["对方", "Counterparty"], hash: ["校验值", "Hash"],
  mv_repair_out: ["维修支出", "repair paid"], cp_owners: ["业主缴存", "owners"], cp_bank: ["银行", "bank"],
  cp_contractor: ["施工单位", "contractor"],
  emergency_code: ["96333 救援识别码", "96333 rescue code"], registration_no: ["使用登记证", "Registration"],
};
export const STATES = {
  created: ["已创建", "created"], dispatched: ["已派单", "dispatched"], acknowledged: ["已接单", "acknowledged"],
  on_site: ["已到场", "on site"], resolved: ["已处置", "resolved"], verifying: ["回头看", "verifying"],
  closed: ["已关闭", "closed"], reopened: ["已重开", "reopened"], cancelled: ["已取消", "cancelled"],
  open: ["未恢复", "open"], cleared: ["已恢复", "cleared"], issued: ["已下发", "issued"],
  rectified: ["已整改", "rectified"], to_be_confirmed: ["待确认", "to be confirmed"],
  confirmed: ["已确认火警", "fire confirmed"], false_alarm: ["误报", "false alarm"],
  critical: ["紧急", "critical"], major: ["重要", "major"], warning: ["一般", "warning"], info: ["提示", "info"],
  maintenance_overdue: ["维保逾期", "maintenance overdue"], inspection_overdue: ["检验逾期", "inspection overdue"],
  all: ["全部", "all"], not_closed: ["未销号", "open"], rejected: ["已退回", "sent back"], holds: ["回头看未反弹", "held"],
  relapsed: ["回头看反弹", "relapsed"], supervised: ["挂牌督办", "supervised"],
  ok: ["正常", "ok"], adjusted: ["已调整", "adjusted"], fault: ["有故障", "fault"],
};
// the fund's cases (紧急维修) and the parties who decide them
Object.assign(WORDS, {
  fundcases: ["维修资金案件", "Fund cases"], case: ["案件", "Case"], estimate: ["预算", "Estimate"],
  year: ["年度", "Year"], apply_by: ["申请期限", "Apply by"],
  overdue_applications: ["先修后报逾期未申请", "Repair-first cases overdue for application"],
  repair_first: ["先修后报", "repair first"], fund_apply: ["申请使用维修资金", "Apply for the fund"],
  fund_accept: ["竣工验收合格", "Accept the completed repair"],
  case_opened: ["已立案", "opened"], case_estimated: ["已申请（待审核）", "applied (estimate in)"],
  case_approved: ["已批准", "approved"], case_repaired: ["已修复待验收", "repaired, to accept"],
  case_accepted: ["已验收", "accepted"], case_settled: ["已拨付公示中", "paid, disclosed"],
  case_closed: ["已结案", "closed"], case_refused: ["不予受理", "refused"],
  party_owners_committee: ["业主委员会", "owners' committee"], party_street_office: ["街道办事处", "street office"],
  party_housing_authority: ["住建部门", "housing authority"], party_standing: ["业主大会授权", "owners' standing authorisation"],
  owners_committee: ["业主委员会", "Owners' committee"],
  // API problems by their type: what a person on duty reads instead of the API's English
  problem_forbidden: ["无权执行此操作", "Not allowed for your role"],
  "problem_not-found": ["未找到，或不在您的管辖范围内", "Not found, or outside your scope"],
  "problem_not-applicable": ["当前状态下不能执行此操作", "Not possible in the current state"],
  problem_conflict: ["当前状态下不能执行此操作", "Not possible in the current state"],
  problem_ineligible: ["不符合紧急维修清单", "Not eligible under the emergency list"],
  "problem_database-unavailable": ["数据库暂不可用，请稍后重试", "Database unavailable, try again shortly"],
  "problem_too-many-requests": ["操作过于频繁，请稍后再试", "Too many requests, try again shortly"],
  "problem_validation-error": ["填写的内容不符合要求", "Some input is not valid"],
  problem_unknown: ["操作失败", "The action failed"], details: ["详情", "Details"],
  role_admin: ["系统管理员", "administrator"], role_operator: ["物业值班", "control room"],
  role_manager: ["物业经理", "property manager"], role_maintenance: ["维保单位", "maintenance company"],
  role_fire_inspector: ["消防监督", "fire inspector"], role_market_inspector: ["特种设备监督", "market supervision"],
  role_housing_authority: ["住建部门", "housing authority"], role_street_office: ["街道办事处", "street office"],
  role_owner: ["业主", "owner"], role_owners_committee: ["业主委员会", "owners' committee"],
  yes: ["是", "yes"], no: ["否", "no"], actor_engine: ["系统判断", "rules engine"], actor_dispatch: ["派单系统", "dispatch"], actor_supervise: ["督办系统", "supervision"],
  events_only: ["此设备只上报事件，没有曲线", "This device reports events only: no curve"],
  note_required: ["请填写说明", "Write a note"], escalated: ["已升级（级）", "escalated, level"], save: ["提交", "Submit"], cancel: ["取消", "Cancel"],
  find_home: ["查我家", "Find my home"], my_share: ["您家分摊", "Your home's share"],
  no_share: ["本次维修未分摊", "paid no share of this repair"], work: ["维修内容", "Work"],
  contractor: ["施工单位", "Contractor"],
});
export const ITEM_NAMES = {
  elevator_danger: ["电梯故障危及人身安全", "lift failure endangering people"], fire_system_failure: ["消防设施故障", "fire-system failure"],
  drainage_failure: ["共用排水设施故障", "shared drainage failure"], basement_flooding: ["暴雨地下室进水", "basement flooding"],
  water_supply_failure: ["二次供水设施故障", "secondary water supply failure"], roof_leak: ["屋面渗漏", "roof leak"],
  wall_leak: ["外墙渗漏", "external wall leak"], facade_falling: ["外墙饰面有脱落危险", "facade at risk of falling"],
  drainage_collapse: ["排水管道塌陷、爆裂", "drainage pipe collapsed or burst"],
};
export const ALERT_NAMES = {
  "elevator.trapped": ["电梯困人", "trapped passengers"], "elevator.overspeed": ["电梯超速", "overspeed"],
  "elevator.door_open_running": ["开门走梯", "door open while running"], "elevator.ebike": ["电动车入梯", "e-bike in car"],
  "device.offline": ["设备离线", "device offline"], "fire.alarm": ["火警", "fire alarm"],
  "fire.pressure_low": ["水压低", "pressure low"], "fire.pressure_falling": ["水压下降", "pressure falling"],
  "fire.door_open": ["防火门常开", "fire door held open"], "fire.point_disabled": ["点位屏蔽", "point disabled"],
  "fire.fault": ["消防故障", "fire system fault"], "drainage.level_high": ["水位过高", "water level high"],
  "drainage.overflow_predicted": ["预计溢流", "overflow predicted"], "drainage.pump_fault": ["水泵故障", "pump fault"],
  "drainage.water_detected": ["地下室进水", "water detected"],
  "water_supply.pressure_low": ["供水压力低", "supply pressure low"], "water_supply.pump_fault": ["加压泵故障", "booster pump fault"],
  "water_supply.tank_low": ["水箱液位低", "water tank low"], "water_supply.tank_overflow": ["水箱溢流", "tank overflowing"],
  "water_supply.hatch_open": ["水箱人孔开启", "tank hatch opened"], "water_supply.power_loss": ["供水设施停电", "pump room power lost"],
  "water_supply.chlorine_out_of_range": ["余氯超出限值", "chlorine out of range"], "water_supply.turbidity_high": ["浊度超标", "turbidity high"],
};
// a notice's problems and steps (整改通知书) in the words inspectors use
export const NOTICE_WORDS = {
  issued: ["待整改", "to rectify"], rectified: ["已整改待验收", "rectified, to verify"], closed: ["已销号", "closed"],
  reopened: ["复查反弹", "reopened"], acknowledged: ["签收", "signed for"], rejected: ["退回", "sent back"],
  holds: ["回头看：未反弹", "look-back: holds"], relapsed: ["回头看：反弹", "look-back: relapsed"],
  supervised: ["挂牌督办", "escalated (supervised)"],
};
// an alert's changes, as the incident page lists them
export const CHANGE_WORDS = {
  raise: ["产生", "raised"], repeat: ["再次触发", "raised again"], severity: ["级别变化", "severity changed"],
  clear: ["恢复", "cleared"], hold: ["设备恢复，待人工关闭", "normal again, held for a person"],
  mute: ["已静默", "silenced"], unmute: ["取消静默", "silence ended"], confirm: ["确认火警", "fire confirmed"],
  rules: ["判断规则变化", "rules changed"], acknowledge: ["签收", "acknowledged"], false_alarm: ["误报", "false alarm"],
  close: ["人工关闭", "closed by a person"], rescued: ["救援完成关闭", "closed after the rescue"],
};
// a work order's events and who was told, as the incident's timeline lists them
export const ORDER_EVENTS = {
  created: ["生成工单", "order created"], dispatched: ["派单", "dispatched"], redispatched: ["改派", "dispatched again"],
  recurrence: ["再次发生", "happened again"], reopened: ["重新打开", "reopened"], verifying: ["观察期：设备须保持正常", "watching: the device must stay normal"],
  closed: ["办结", "closed"], fire_confirmed: ["确认火警", "fire confirmed"], breach: ["超时升级", "deadline missed, escalated"],
  acknowledged: ["已接单", "acknowledged"], on_site: ["已到场", "on site"], resolved: ["处置完成", "resolved"], cancelled: ["已取消", "cancelled"],
};
// device kinds and subtypes (the contract's, docs/contract.md), as the trades call them
export const DEVICE_NAMES = {
  elevator: ["电梯", "lift"], fire: ["消防", "fire"], drainage: ["排水", "drainage"], water_supply: ["二次供水", "water supply"],
  passenger: ["乘客电梯", "passenger lift"], freight: ["载货电梯", "freight lift"], escalator: ["自动扶梯", "escalator"],
  fire_panel: ["火灾报警控制器", "fire alarm panel"], smoke_detector: ["感烟探测器", "smoke detector"],
  manual_call_point: ["手动报警按钮", "manual call point"], hydrant_pressure: ["消火栓水压", "hydrant pressure"],
  sprinkler_pressure: ["喷淋水压", "sprinkler pressure"], water_tank: ["消防水箱", "fire water tank"],
  fire_pump: ["消防水泵", "fire pump"], fire_door: ["防火门", "fire door"], electrical: ["电气火灾监控", "electrical fire monitor"],
  sump_pit: ["集水井", "sump pit"], manhole: ["检查井", "manhole"], immersion: ["水浸探测", "flood sensor"],
  backflow_valve: ["防倒灌闸门", "backflow valve"], booster_pump: ["加压水泵", "booster pump"], tank: ["生活水箱", "water tank"],
  water_quality: ["水质监测", "water quality"],
};
// the chosen language, 0 Chinese (the default) or 1 English, kept per browser; reactive, so
// every view that reads a word re-renders when it changes
const stored = typeof localStorage === "undefined" ? null : localStorage.getItem("lang");
export const lang = ref(stored === "en" ? 1 : 0);
// a word from one of the tables above in the chosen language; else the fallback (the code)
export function inLang(table, key, fallback = key) { const w = table[key]; return w ? w[lang.value] : fallback; }
export const t = key => inLang(WORDS, key);
export const tState = s => inLang(STATES, s);
export const tAlert = a => inLang(ALERT_NAMES, a);
export const tItem = i => inLang(ITEM_NAMES, i);
export const tDevice = k => inLang(DEVICE_NAMES, k);
export const tChange = c => inLang(CHANGE_WORDS, c, tState(c));
export const tNotice = s => inLang(NOTICE_WORDS, s, tState(s));
export const tOrderEvent = c => inLang(ORDER_EVENTS, c, tState(c));
// who did it: the system's parts in words, a person by their login (user:c-duty → c-duty)
export const tActor = a => (WORDS[`actor_${a}`] ? t(`actor_${a}`) : String(a || "").replace(/^user:/, ""));
export function setLang(en) {
  lang.value = en ? 1 : 0;
  localStorage.setItem("lang", en ? "en" : "zh");
  document.documentElement.lang = en ? "en" : "zh-CN";
}
