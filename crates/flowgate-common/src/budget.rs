//! Budget periods and their bounds, shared by the api-server (budget reports) and the proxy
//! (spend accounting): both must agree on which `spend` row a request belongs to.
//!
//! Every period is in UTC:
//! - `daily`: the calendar day, 00:00 to 24:00;
//! - `weekly`: the ISO week, Monday 00:00 to the next Monday 00:00;
//! - `monthly`: the calendar month, the 1st 00:00 to the 1st of the next month;
//! - `total`: one period for the key's whole life, starting at 0 and never ending.
//!
//! Bounds are unix milliseconds; the start is inclusive, the end exclusive.

use std::fmt;
use std::str::FromStr;

const MS_PER_DAY: i64 = 86_400_000;

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// Resets at 00:00 UTC every day.
    Daily,
    /// Resets at 00:00 UTC every Monday (ISO week).
    Weekly,
    /// Resets at 00:00 UTC on the first of every month.
    Monthly,
    /// Never resets.
    #[default]
    Total,
}

/// Every valid period name, for error messages.
pub const VALID_PERIODS: &str = "daily, weekly, monthly, total";

/// A period name that is not one of [`VALID_PERIODS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown budget period `{0}`; valid periods: daily, weekly, monthly, total")]
pub struct UnknownPeriod(pub String);

impl BudgetPeriod {
    /// Every period, in order of length.
    pub const ALL: [Self; 4] = [Self::Daily, Self::Weekly, Self::Monthly, Self::Total];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Total => "total",
        }
    }

    /// `[start, end)` of the period containing `now_ms`; see [`period_bounds`].
    pub fn bounds(self, now_ms: i64) -> (i64, Option<i64>) {
        period_bounds(self, now_ms)
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPeriod {
    type Err = UnknownPeriod;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            "monthly" => Ok(Self::Monthly),
            "total" | "" => Ok(Self::Total),
            other => Err(UnknownPeriod(other.to_owned())),
        }
    }
}

/// The period containing `now_ms` (unix milliseconds): `(start_ms, end_ms)`, start inclusive, end
/// exclusive; `end_ms` is `None` for [`BudgetPeriod::Total`], whose start is 0.
///
/// The start identifies the period: it is the `period_start` of the `spend` row the proxy writes
/// and the api-server reads.
pub fn period_bounds(period: BudgetPeriod, now_ms: i64) -> (i64, Option<i64>) {
    let day = now_ms.div_euclid(MS_PER_DAY);
    match period {
        BudgetPeriod::Total => (0, None),
        BudgetPeriod::Daily => (day * MS_PER_DAY, Some((day + 1) * MS_PER_DAY)),
        BudgetPeriod::Weekly => {
            // 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, counts from Monday.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * MS_PER_DAY, Some((monday + 7) * MS_PER_DAY))
        }
        BudgetPeriod::Monthly => {
            let (year, month, _) = civil_from_days(day);
            let start = days_from_civil(year, month, 1);
            let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            let end = days_from_civil(next_year, next_month, 1);
            (start * MS_PER_DAY, Some(end * MS_PER_DAY))
        }
    }
}

/// `ms` (unix milliseconds) as an RFC 3339 UTC timestamp to the second, e.g.
/// `2026-04-01T00:00:00Z`.
pub fn utc_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix millis of a UTC date and time.
    fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        (days_from_civil(year, month, day) * 24 * 60 + hour * 60 + minute) * 60_000
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(at(2026, 4, 1, 0, 0)), "2026-04-01T00:00:00Z");
        assert_eq!(utc_timestamp(at(2024, 2, 29, 23, 59) + 59_999), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn civil_conversions_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn daily_is_the_utc_day() {
        let now = at(2024, 2, 29, 13, 45) + 123;
        assert_eq!(period_bounds(BudgetPeriod::Daily, now), (at(2024, 2, 29, 0, 0), Some(at(2024, 3, 1, 0, 0))));
        let midnight = at(2024, 3, 1, 0, 0);
        assert_eq!(period_bounds(BudgetPeriod::Daily, midnight).0, midnight, "start is inclusive");
        assert_eq!(period_bounds(BudgetPeriod::Daily, midnight - 1).1, Some(midnight), "end is exclusive");
    }

    #[test]
    fn weekly_starts_on_monday() {
        // 2024-01-01 was a Monday; 2024-01-07 a Sunday.
        let monday = at(2024, 1, 1, 0, 0);
        let next = Some(at(2024, 1, 8, 0, 0));
        assert_eq!(period_bounds(BudgetPeriod::Weekly, monday), (monday, next));
        assert_eq!(period_bounds(BudgetPeriod::Weekly, at(2024, 1, 3, 12, 0)), (monday, next));
        assert_eq!(period_bounds(BudgetPeriod::Weekly, at(2024, 1, 7, 23, 59)), (monday, next));
        assert_eq!(period_bounds(BudgetPeriod::Weekly, at(2024, 1, 8, 0, 0)).0, at(2024, 1, 8, 0, 0));
        // Across a year boundary: Sunday 2023-12-31 belongs to the week of Monday 2023-12-25.
        assert_eq!(period_bounds(BudgetPeriod::Weekly, at(2023, 12, 31, 8, 0)).0, at(2023, 12, 25, 0, 0));
        // The epoch (a Thursday) belongs to the week of Monday 1969-12-29.
        assert_eq!(period_bounds(BudgetPeriod::Weekly, 0).0, at(1969, 12, 29, 0, 0));
    }

    #[test]
    fn monthly_is_the_calendar_month() {
        assert_eq!(
            period_bounds(BudgetPeriod::Monthly, at(2024, 2, 15, 10, 0)),
            (at(2024, 2, 1, 0, 0), Some(at(2024, 3, 1, 0, 0)))
        );
        assert_eq!(
            period_bounds(BudgetPeriod::Monthly, at(2023, 12, 31, 23, 59)),
            (at(2023, 12, 1, 0, 0), Some(at(2024, 1, 1, 0, 0)))
        );
        assert_eq!(period_bounds(BudgetPeriod::Monthly, at(2024, 1, 1, 0, 0)).0, at(2024, 1, 1, 0, 0));
    }

    #[test]
    fn total_never_ends() {
        assert_eq!(period_bounds(BudgetPeriod::Total, at(2030, 6, 1, 0, 0)), (0, None));
    }

    #[test]
    fn every_instant_lies_inside_its_period() {
        let mut now = at(2023, 12, 20, 0, 0);
        while now < at(2024, 3, 10, 0, 0) {
            for period in BudgetPeriod::ALL {
                let (start, end) = period_bounds(period, now);
                assert!(start <= now && end.is_none_or(|end| now < end), "{period} {now}");
                if let Some(end) = end {
                    assert_eq!(period_bounds(period, end).0, end, "{period}: periods tile the timeline");
                    assert_eq!(period_bounds(period, end - 1).0, start);
                }
            }
            now += 3_600_000 + 17;
        }
    }

    #[test]
    fn names_parse_and_print() {
        for period in BudgetPeriod::ALL {
            assert_eq!(period.as_str().parse::<BudgetPeriod>(), Ok(period));
            assert_eq!(serde_json::to_value(period).unwrap(), period.as_str());
        }
        assert_eq!("".parse::<BudgetPeriod>(), Ok(BudgetPeriod::Total));
        assert!("hourly".parse::<BudgetPeriod>().unwrap_err().to_string().contains(VALID_PERIODS));
        assert!(serde_json::from_str::<BudgetPeriod>("\"yearly\"").is_err());
    }
}
