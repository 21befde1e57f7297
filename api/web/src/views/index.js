// The routes: each page's view and how the hash's parts become its props; what each role
// looks at (first = its home).
import BoardView from "./BoardView.vue";
import AlertView from "./AlertView.vue";
import EstatesView from "./EstatesView.vue";
import EstateView from "./EstateView.vue";
import DeviceView from "./DeviceView.vue";
import OrdersView from "./OrdersView.vue";
import SilencesView from "./SilencesView.vue";
import FireView from "./FireView.vue";
import ElevatorsView from "./ElevatorsView.vue";
import NoticesView from "./NoticesView.vue";
import NoticeView from "./NoticeView.vue";
import LedgerView from "./LedgerView.vue";
import MyHomeView from "./MyHomeView.vue";
import FundCasesView from "./FundCasesView.vue";
import FundCaseView from "./FundCaseView.vue";
import DisclosureView from "./DisclosureView.vue";
import DevicesView from "./DevicesView.vue";
import DrainageView from "./DrainageView.vue";
import FundAccountsView from "./FundAccountsView.vue";
import FundAccountView from "./FundAccountView.vue";

const none = () => ({});
export const VIEWS = {
  board: { component: BoardView, props: none },
  alert: { component: AlertView, props: ([id]) => ({ id }) },
  estates: { component: EstatesView, props: none },
  estate: { component: EstateView, props: ([code]) => ({ code }) },
  device: { component: DeviceView, props: ([estate, code]) => ({ estate, code }) },
  orders: { component: OrdersView, props: none },
  silences: { component: SilencesView, props: none },
  fire: { component: FireView, props: none },
  elevators: { component: ElevatorsView, props: none },
  notices: { component: NoticesView, props: none },
  notice: { component: NoticeView, props: ([id]) => ({ id }) },
  ledger: { component: LedgerView, props: none },
  myhome: { component: MyHomeView, props: none },
  fundcases: { component: FundCasesView, props: none },
  fundcase: { component: FundCaseView, props: ([id]) => ({ id }) },
  disclosure: { component: DisclosureView, props: none },
  devicelist: { component: DevicesView, props: none },
  drainage: { component: DrainageView, props: none },
  fundaccounts: { component: FundAccountsView, props: none },
  fundaccount: { component: FundAccountView, props: ([id]) => ({ id }) },
};
export const NAV = {
  admin: ["board", "estates", "devicelist", "orders", "silences", "fire", "elevators", "drainage", "notices", "ledger", "fundcases", "fundaccounts"],
  operator: ["board", "orders", "estates", "devicelist", "silences", "fire", "drainage", "notices", "fundcases", "fundaccounts"],
  manager: ["board", "orders", "estates", "devicelist", "silences", "fire", "elevators", "drainage", "notices", "fundcases", "fundaccounts"],
  maintenance: ["orders", "board", "estates", "devicelist", "notices"],
  fire_inspector: ["fire", "notices", "ledger", "board", "estates", "devicelist"],
  // the lift orders a market inspector follows are in 电梯监管 (its own 工单 list is empty)
  market_inspector: ["elevators", "notices", "ledger", "board", "estates", "devicelist"],
  housing_authority: ["estates", "elevators", "fire", "drainage", "notices", "ledger", "board", "fundcases", "fundaccounts"],
  street_office: ["board", "orders", "estates", "fire", "elevators", "drainage", "notices", "ledger", "fundcases", "fundaccounts"],
  owner: ["myhome", "disclosure"],
  owners_committee: ["fundcases", "fundaccounts", "disclosure"],
};
