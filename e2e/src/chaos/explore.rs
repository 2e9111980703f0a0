//! The fault explorer: where the drills each put one fault the way it was imagined, the
//! explorer draws a schedule from a seed, composing faults (Redis back behind or empty, a replica
//! killed, PostgreSQL stopped or frozen, the payment provider failing, hanging, declining or
//! answering late, clocks apart) and shoppers' habits (larger orders, the same order sent again,
//! or twice at once, a cancel sent twice, leaving once admitted), runs it on real processes configured as in a
//! cluster (Redis with `appendfsync everysec`), and checks the history every drill checks
//! ([`super::settle::settled`]). The same seed draws the same schedule: a seed that broke a
//! promise is replayed with the command [`replay`] prints.

use std::{
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use timedeal_tenant_app::payments::sandbox::Mode;
use timedeal_testkit::{Durability, PostgresServer, RedisServer};

use super::{faketime, report, shopper::Habits, Fault, Plan, Provider, Report, Sale};
use crate::Error;

/// One fault of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Redis comes back `behind` behind: its data copied now, the server killed and started on
    /// the copy once `behind` has passed (a node lost with its page cache).
    RedisRollback { behind: Duration },
    /// Redis replaced without its data.
    RedisEmpty,
    /// The second replica killed with SIGKILL (the first stays, so the sale can go on).
    KillReplica,
    /// PostgreSQL stopped, then started again.
    PostgresStop { down: Duration },
    /// PostgreSQL frozen (SIGSTOP), then thawed.
    PostgresFreeze { down: Duration },
    /// The payment provider misbehaving for a while.
    Provider { mode: Mode, down: Duration },
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| d.as_secs_f64();
        match self {
            Injection::RedisRollback { behind } => {
                write!(f, "Redis back {:.1} s behind", s(behind))
            }
            Injection::RedisEmpty => f.write_str("Redis replaced empty"),
            Injection::KillReplica => f.write_str("replica 2 killed"),
            Injection::PostgresStop { down } => write!(f, "PostgreSQL stopped {:.1} s", s(down)),
            Injection::PostgresFreeze { down } => {
                write!(f, "PostgreSQL frozen {:.1} s", s(down))
            }
            Injection::Provider { mode, down } => {
                write!(f, "provider {mode:?} for {:.1} s", s(down))
            }
        }
    }
}

/// What one seed draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    /// How long the provider takes to answer.
    pub payments_take: Duration,
    /// Seconds the second replica's clock is ahead of the first's (libfaketime), if apart.
    pub skew: Option<i64>,
    /// Each shopper's habits.
    pub shoppers: Vec<Habits>,
    /// Faults, by when they start after the sale's first sales.
    pub faults: Vec<(Duration, Injection)>,
}

impl Schedule {
    /// Draws the schedule of `seed` for a sale of `plan`'s size.
    pub fn draw(seed: u64, plan: &Plan) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let payments_take = Duration::from_millis(rng.gen_range(10..=300));
        let skew = rng.gen_bool(0.3).then(|| rng.gen_range(1..=5_i64));
        // Drawn apart, so that adding a habit leaves every seed's other draws as they were.
        let mut clicks = StdRng::seed_from_u64(seed ^ 0x0005_eedd_0b1e_c11c);
        let shoppers = (0..plan.shoppers)
            .map(|_| {
                let cancels = rng.gen_bool(0.2);
                Habits {
                    quantity: if rng.gen_bool(0.25) {
                        plan.limit.max(1) as u32
                    } else {
                        1
                    },
                    cancels,
                    cancels_twice: cancels && rng.gen_bool(0.3),
                    repeats: rng.gen_bool(0.15),
                    leaves: rng.gen_bool(0.05),
                    doubles: clicks.gen_bool(0.15),
                }
            })
            .collect();
        let mut faults = Vec::new();
        let mut at = Duration::ZERO;
        let mut killed = false;
        for _ in 0..rng.gen_range(2..=4) {
            at += Duration::from_millis(rng.gen_range(300..=3_000));
            let down = Duration::from_millis(rng.gen_range(1_000..=6_000));
            let injection = match rng.gen_range(0..7) {
                0 | 1 => Injection::RedisRollback {
                    behind: Duration::from_millis(rng.gen_range(200..=1_500)),
                },
                2 => Injection::RedisEmpty,
                3 if !killed => {
                    killed = true;
                    Injection::KillReplica
                }
                3 | 4 => {
                    if rng.gen_bool(0.5) {
                        Injection::PostgresStop { down }
                    } else {
                        Injection::PostgresFreeze { down }
                    }
                }
                _ => Injection::Provider {
                    mode: [Mode::Fail, Mode::Hang, Mode::Late, Mode::Decline][rng.gen_range(0..4)],
                    down,
                },
            };
            faults.push((at, injection));
        }
        Self {
            seed,
            payments_take,
            skew,
            shoppers,
            faults,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: payments take {} ms",
            self.seed,
            self.payments_take.as_millis()
        )?;
        if let Some(skew) = self.skew {
            write!(f, ", clocks {skew} s apart")?;
        }
        for (at, injection) in &self.faults {
            write!(f, "; at +{:.1} s {injection}", at.as_secs_f64())?;
        }
        let count = |pick: fn(&Habits) -> bool| self.shoppers.iter().filter(|h| pick(h)).count();
        write!(
            f,
            "; of {} shoppers {} cancel ({} twice), {} repeat orders, {} double-click, {} leave, \
             {} buy {} at once",
            self.shoppers.len(),
            count(|h| h.cancels),
            count(|h| h.cancels_twice),
            count(|h| h.repeats),
            count(|h| h.doubles),
            count(|h| h.leaves),
            count(|h| h.quantity > 1),
            self.shoppers.iter().map(|h| h.quantity).max().unwrap_or(1),
        )
    }
}

/// The one command that replays `seed`.
pub fn replay(seed: u64) -> String {
    format!(
        "TIMEDEAL_EXPLORE_SEEDS={seed} cargo test -p timedeal-tenant-app --test explore -- --nocapture"
    )
}

/// Runs the schedule of `seed` with the storefront `binary`, on stores of its own, and checks
/// every promise once it has settled.
pub async fn explore(binary: &Path, seed: u64, plan: Plan) -> Result<Report, Error> {
    let schedule = Schedule::draw(seed, &plan);
    eprintln!("explorer: {schedule}");
    run(binary, &schedule, plan).await.map_err(|error| {
        Error::Broken(format!(
            "{error}\n  schedule: {schedule}\n  replay: {}",
            replay(seed)
        ))
    })
}

async fn run(binary: &Path, schedule: &Schedule, plan: Plan) -> Result<Report, Error> {
    let started = Instant::now();
    let mut redis = RedisServer::start_as_in_a_cluster().map_err(Error::start("Redis"))?;
    let mut postgres =
        PostgresServer::start_with(Durability::Durable).map_err(Error::start("PostgreSQL"))?;
    let postgres_url = postgres.url();
    let provider = Provider::start(schedule.payments_take).await?;
    let deal = plan.deal(&format!("explore-{}", schedule.seed));
    let envs = match schedule.skew {
        Some(skew) => [Vec::new(), faketime(&format!("+{skew}s"))?],
        None => [Vec::new(), Vec::new()],
    };
    let flags = ["--payment-timeout=2s"];
    let mut sale = Sale::start(binary, &redis, &postgres_url, deal, provider, &flags, envs).await?;

    let deadline = Instant::now() + Duration::from_secs(90 + plan.shoppers as u64 / 10);
    sale.shoppers = schedule
        .shoppers
        .iter()
        .enumerate()
        .map(|(i, habits)| {
            let shopper = sale.shopper(i);
            let habits = *habits;
            tokio::spawn(async move { shopper.shop_with(&format!("s{i}"), habits, deadline).await })
        })
        .collect();
    sale.sold(1).await?;
    let first_sale = Instant::now();
    for (at, injection) in &schedule.faults {
        tokio::time::sleep_until((first_sale + *at).into()).await;
        match *injection {
            Injection::RedisRollback { behind } => {
                let copy = redis.copy_data().map_err(Error::start("a copy of Redis"))?;
                tokio::time::sleep(behind).await;
                redis
                    .roll_back(&copy)
                    .map_err(Error::start("Redis on its older copy"))?;
            }
            Injection::RedisEmpty => {
                redis.restart_empty().map_err(Error::start("Redis again"))?;
            }
            Injection::KillReplica => sale.replicas[1].kill(),
            Injection::PostgresStop { down } => {
                postgres.stop();
                tokio::time::sleep(down).await;
                postgres
                    .start_again()
                    .map_err(Error::start("PostgreSQL again"))?;
            }
            Injection::PostgresFreeze { down } => {
                postgres.freeze();
                tokio::time::sleep(down).await;
                postgres.thaw();
            }
            Injection::Provider { mode, down } => {
                sale.provider.ledger.set_mode(mode);
                tokio::time::sleep(down).await;
                sale.provider.ledger.set_mode(Mode::Normal);
            }
        }
    }
    for shopper in sale.shoppers.drain(..) {
        shopper.await.map_err(|e| Error::Load(e.to_string()))??;
    }
    let told = std::mem::take(&mut *sale.told.lock().unwrap());
    let stores = super::settle::Stores {
        redis_url: &redis.url(),
        postgres_url: &postgres_url,
        prefix: &sale.deal.prefix(),
        schema: &sale.deal.schema(),
        stock: plan.stock,
        limit: plan.limit,
    };
    super::settle::settled(&stores, &sale.provider.ledger, &told)
        .await
        .map_err(|error| sale.with_logs(error))?;
    sale.published_record_held()
        .await
        .map_err(|error| sale.with_logs(error))?;
    let unmatched: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {}.unmatched_payments",
        sale.deal.schema()
    ))
    .fetch_one(&sale.db)
    .await
    .map_err(Error::postgres("count unmatched payments"))?;
    Ok(report(Fault::Explore, started, &told, unmatched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_schedule_every_time() {
        let plan = Plan::explorer();
        assert_eq!(Schedule::draw(7, &plan), Schedule::draw(7, &plan));
        assert_ne!(Schedule::draw(7, &plan), Schedule::draw(8, &plan));
    }

    #[test]
    fn schedules_compose_several_faults_and_kill_at_most_one_replica() {
        let plan = Plan::explorer();
        for seed in 0..200 {
            let schedule = Schedule::draw(seed, &plan);
            assert!((2..=4).contains(&schedule.faults.len()), "{schedule}");
            let kills = schedule
                .faults
                .iter()
                .filter(|(_, i)| *i == Injection::KillReplica)
                .count();
            assert!(kills <= 1, "{schedule}");
            assert!(schedule.faults.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(schedule.shoppers.len(), plan.shoppers);
        }
        let rollbacks = (0..200)
            .filter(|seed| {
                Schedule::draw(*seed, &plan)
                    .faults
                    .iter()
                    .any(|(_, i)| matches!(i, Injection::RedisRollback { .. }))
            })
            .count();
        assert!(
            rollbacks > 50,
            "Redis rolled back in only {rollbacks} of 200 seeds"
        );
    }

    #[test]
    fn the_replay_command_names_the_seed() {
        assert!(replay(42).contains("TIMEDEAL_EXPLORE_SEEDS=42"));
    }
}
