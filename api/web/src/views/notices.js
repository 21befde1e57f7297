// who issues notices for which authority, and who receives them
export const ISSUER = { fire_inspector: "fire", market_inspector: "market", housing_authority: "housing", street_office: "street" };
export const RECIPIENT_ROLES = ["operator", "manager", "maintenance"];
