//! The background work every replica does, a few times a second: open the queue at the start,
//! run one admission step, settle lapsed reservations, return the stock of cancelled orders, and
//! publish the deal-wide figures that live updates and metrics read. Every step is safe to run
//! from many replicas at once: the Lua scripts and PostgreSQL's primary keys decide.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::{
    app::App,
    commit::epoch_of,
    db::{self, Lapse},
    deal::{Deal, DealState},
    error::Error,
    orders::{self, reservations::Reservation},
    payments::{self, Refund},
    queue::{arithmetic, beacon, draw, record, Figures, Step, StepInput},
    restore,
};

const TICK: Duration = Duration::from_millis(100);

/// A cancellation marked this long ago and not finished was left half-way (its replica died,
/// or the refund failed): the sweeper finishes it.
const STALLED_CANCEL_SECS: i64 = 30;

/// Keeps the total in step with the spec (the stock may change until the deal starts).
async fn follow_stock(app: &App) -> Result<(), Error> {
    let _: () = redis::cmd("HSET")
        .arg(format!("{}deal", app.prefix))
        .arg("total")
        .arg(app.deal().spec.product.stock)
        .query_async(&mut app.redis.clone())
        .await?;
    Ok(())
}

/// Reads the deal-wide figures now, with the pace this replica observed.
pub async fn figures(app: &App) -> Result<Figures, Error> {
    let now_ms = app.clock.now().timestamp_millis();
    let mut figures = app.queue.snapshot(now_ms).await?;
    figures.pace = observe_head(app, now_ms, figures.head);
    Ok(figures)
}

/// Records where the head is, and reads the pace from the recent samples.
fn observe_head(app: &App, now_ms: i64, head: u64) -> Option<crate::queue::arithmetic::Pace> {
    let mut samples = app.head_samples.lock().unwrap_or_else(|e| e.into_inner());
    if samples.back().is_some_and(|(_, h)| *h > head) {
        // The head went back: Redis lost its data and the line started again.
        samples.clear();
    }
    if samples.back().is_none_or(|(t, _)| now_ms - t >= 250) {
        samples.push_back((now_ms, head));
    }
    let keep_from = now_ms - arithmetic::PACE_STRETCH.as_millis() as i64 - 1_000;
    while samples.front().is_some_and(|(t, _)| *t < keep_from) {
        samples.pop_front();
    }
    arithmetic::pace(samples.make_contiguous())
}

/// Flushes this replica's liveness marks; marks that could not be written go with the next.
async fn flush_marks(app: &App, window: Duration) {
    let batches = app.marks.take();
    if batches.is_empty() {
        return;
    }
    if let Err(error) = app.queue.flush_marks(&batches, window).await {
        tracing::debug!(%error, "liveness marks not flushed; retrying");
        app.marks.restore(batches);
    }
}

/// One admission step. While the head is in the pre-queue, this replica names the join numbers
/// holding the next places, from the draw; if another replica moved the head meanwhile, the
/// step is tried once more from where the head is.
async fn admit(
    app: &App,
    deal: &Deal,
    figures: &Figures,
    now: DateTime<Utc>,
) -> Result<Step, Error> {
    let settings = App::settings(deal);
    let ahead = (settings.admission_rate as u64 * 10).clamp(100, 5_000);
    let draw = app.draw_for(figures);
    let mut head_seen = figures.head;
    let mut tries = 0;
    loop {
        let numbers: Vec<u64> = match (&draw, figures.drawn) {
            (Some(draw), Some(n)) if head_seen < n => (head_seen + 1..=n.min(head_seen + ahead))
                .filter_map(|place| draw.number_at(place))
                .collect(),
            _ => Vec::new(),
        };
        let input = StepInput {
            settings,
            window: App::window(deal),
            admitting: app.state_now(now) == DealState::Live,
            head_seen,
            numbers: &numbers,
        };
        let step = app.queue.step(now.timestamp_millis(), &input).await?;
        tries += 1;
        if !step.stale || tries == 2 {
            return Ok(step);
        }
        head_seen = step.head;
    }
}

/// Moves the admission log's staged lines into PostgreSQL, where the fairness record is read
/// from (`queue::record`), on its own so that a slow PostgreSQL never slows admissions. A
/// staged line of the current epoch that contradicts the record shows Redis went back: its
/// figures are restored.
async fn publisher(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher = Publisher::default();
    let mut failures: u64 = 0;
    loop {
        interval.tick().await;
        match publisher.step(&app).await {
            Ok(()) => failures = 0,
            Err(error) => {
                // Said once per outage, then every minute or so.
                if failures.is_multiple_of(600) {
                    tracing::warn!(%error, "cannot publish the admission log; retrying");
                }
                failures += 1;
            }
        }
    }
}

/// What the publisher keeps between steps.
#[derive(Default)]
struct Publisher {
    draws: record::Drawn,
    /// The pre-queue's size is in PostgreSQL (revealing the seed), whatever Redis forgets.
    size_recorded: bool,
}

impl Publisher {
    async fn step(&mut self, app: &App) -> Result<(), Error> {
        let (drawn, redis_epoch, closed_at) = {
            let figures = app.figures.borrow();
            (figures.drawn, figures.epoch, figures.closed_at)
        };
        if let (Some(size), false) = (drawn, self.size_recorded) {
            // Redis restored without the moment: the start is when the pre-queue closed.
            let closed_at =
                closed_at.unwrap_or_else(|| app.deal().timeline.start.timestamp_millis());
            record::record_pre_queue(&app.db, size, closed_at).await?;
            self.size_recorded = true;
        }
        let staged = app.queue.staged(500).await?;
        if staged.is_empty() {
            return Ok(());
        }
        // Places in a drawn pre-queue are judged by the draw's key, known once the beacon's
        // round is recorded; nobody is admitted from the pre-queue before that.
        let key = match drawn {
            Some(0) => app.draw_seed.clone(),
            Some(_) => match app.draw_key() {
                Some(key) => key,
                None => return Ok(()),
            },
            // Nothing is admitted before the pre-queue is drawn: these figures are behind.
            None => return Ok(()),
        };
        let publication = record::publish(&app.db, &staged, &key, drawn, &mut self.draws).await?;
        if !publication.handled {
            return Ok(());
        }
        app.queue.drop_staged(&staged).await?;
        if publication.outdated > 0 {
            tracing::info!(
                entries = publication.outdated,
                "admission steps of an earlier epoch left unpublished: a restore voided them"
            );
            // Redis still in an epoch PostgreSQL has left: a restore began and never ended.
            if publication.outdated_epoch == Some(redis_epoch) {
                app.reservations.doubt(
                    redis_epoch,
                    "Redis admits in an epoch PostgreSQL has left; its restore did not finish",
                );
            }
        }
        if let Some(entry) = publication.contradicting.first() {
            tracing::warn!(
                entry = %entry,
                "Redis gave places the published admission log gives otherwise"
            );
            app.reservations.doubt(
                publication.epoch,
                "Redis gave places the published admission log gives otherwise",
            );
        }
        Ok(())
    }
}

/// Follows the beacon until the draw's key is known: once the pre-queue has closed, the first
/// round the beacon emits after that moment is fetched and recorded in PostgreSQL (the first
/// replica's record is everyone's), or, past the beacon's patience after it was due, recorded as
/// unavailable. Asks nothing before the start, and backs off while the beacon fails.
async fn beacon(app: Arc<App>) {
    let client = beacon::BeaconClient::default();
    let mut chain = None;
    let mut failures: u32 = 0;
    loop {
        let until_start = (app.deal().timeline.start - app.clock.now())
            .to_std()
            .unwrap_or_default();
        if !until_start.is_zero() {
            // A second at a time: the start may be moved.
            tokio::time::sleep(until_start.min(Duration::from_secs(1))).await;
            continue;
        }
        match settle_beacon(&app, &client, &mut chain).await {
            Ok(true) => return,
            Ok(false) => failures = 0,
            Err(error) => {
                if failures.is_multiple_of(10) {
                    tracing::warn!(%error, beacon = %app.draw_beacon, "cannot read the draw's beacon yet; retrying");
                }
                failures += 1;
            }
        }
        let backoff = Duration::from_millis(250) * 2u32.pow(failures.min(3));
        tokio::time::sleep(backoff).await;
    }
}

/// One look at the beacon: true once the draw's key is known. The chain's timing is read once.
async fn settle_beacon(
    app: &App,
    client: &beacon::BeaconClient,
    chain: &mut Option<beacon::Chain>,
) -> Result<bool, Error> {
    let now_ms = app.clock.now().timestamp_millis();
    let mut recorded = db::beacon_drawn(&app.db).await?;
    // The round follows the pre-queue's close as recorded with its size, never the schedule
    // as it may read later.
    let Some(closed_ms) = recorded.3.filter(|closed| *closed < now_ms) else {
        return Ok(false);
    };
    if recorded.1.is_none() && !recorded.2 {
        let patience = app.beacon_patience.as_millis() as i64;
        let fetched = async {
            let known = match chain {
                Some(known) => *known,
                None => *chain.insert(client.chain(&app.draw_beacon).await?),
            };
            let round = known.round_after(closed_ms);
            if now_ms < known.emitted_ms(round) {
                return Ok(None);
            }
            Ok::<_, Error>(
                client
                    .round(&app.draw_beacon, round)
                    .await?
                    .map(|r| (round, r)),
            )
        }
        .await;
        // Patience counts from when the round was due (from the close while the chain's
        // timing is unknown).
        let due = chain.map_or(closed_ms, |c| c.emitted_ms(c.round_after(closed_ms)));
        let waited_out = now_ms - due > patience;
        recorded = match fetched {
            Ok(Some((round, randomness))) => {
                db::record_beacon(&app.db, Some((round, &randomness))).await?
            }
            Ok(None) if !waited_out => return Ok(false),
            Err(error) if !waited_out => return Err(error),
            _ => {
                tracing::warn!(
                    beacon = %app.draw_beacon,
                    "the draw's beacon round did not come within {:?}: the draw is keyed by the seed alone",
                    app.beacon_patience
                );
                db::record_beacon(&app.db, None).await?
            }
        };
    }
    let randomness = match recorded {
        (_, Some(hex), _, _) => Some(draw::unhex(&hex).ok_or_else(|| {
            Error::Beacon(format!("the recorded beacon randomness {hex:?} is not hex"))
        })?),
        (_, None, true, _) => None,
        _ => return Ok(false),
    };
    let key = beacon::draw_key(&app.draw_seed, randomness.as_deref());
    *app.draw_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
    tracing::info!(round = ?recorded.0, "the draw's key is fixed");
    Ok(true)
}

/// A payment to void because its reservation lapsed: order id, purchase key, amount.
type LapsedPayment = (i64, String, i64);

pub fn spawn(app: Arc<App>, publish: watch::Sender<Figures>) {
    let (refunds, to_refund) = mpsc::unbounded_channel();
    tokio::spawn(money(app.clone(), to_refund));
    tokio::spawn(retention(app.clone()));
    tokio::spawn(publisher(app.clone()));
    if !app.draw_beacon.is_empty() {
        tokio::spawn(beacon(app.clone()));
    }
    if let Some(mailer) = app.mailer.clone() {
        tokio::spawn(reminders(app.clone(), mailer));
    }
    tokio::spawn(async move {
        let mut ticks: u64 = 0;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            ticks += 1;
            if let Err(error) = tick(&app, &publish, &refunds, ticks).await {
                if ticks % 50 == 1 {
                    tracing::warn!(%error, "background step failed; retrying");
                }
            }
        }
    });
}

/// The background work that talks to the payment provider, apart from the queue's so a slow or
/// hanging provider never holds admissions: refunds of lapsed reservations, cancellations left
/// half-way, and reconciliation. A refund lost with this process is found by reconciliation.
async fn money(app: Arc<App>, mut lapsed: mpsc::UnboundedReceiver<LapsedPayment>) {
    let mut seconds: u64 = 0;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        seconds += 1;
        while let Ok((id, key, amount)) = lapsed.try_recv() {
            reverse_lapsed(&app, id, &key, amount).await;
        }
        let result = async {
            if seconds.is_multiple_of(5) {
                for (id, amount) in db::stalled_cancellations(&app.db, STALLED_CANCEL_SECS).await? {
                    tracing::info!(order = id, "finishing a cancellation left half-way");
                    if let Err(error) = orders::finish_cancel(&app, id, amount).await {
                        tracing::warn!(order = id, error = %error.message, "cannot finish the cancellation yet");
                    }
                }
            }
            if seconds.is_multiple_of(10) {
                payments::reconcile(&app).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = result.await {
            tracing::warn!(%error, "payment housekeeping failed; retrying");
        }
    }
}

/// Sends the reminder mails that are due. Every replica does; the rows' locks decide who sends
/// which (see [`reminders`](crate::reminders)).
async fn reminders(app: Arc<App>, mailer: Arc<crate::reminders::Mailer>) {
    let mut interval = tokio::time::interval(crate::reminders::EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        interval.tick().await;
        match crate::reminders::send_due(&app, &mailer).await {
            Ok(sent) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("reminders can be sent again");
                }
                if sent > 0 {
                    tracing::info!(sent, "reminder mails sent");
                }
            }
            // Said once per outage, not every two seconds.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot send reminders; retrying every 2 s");
            }
            Err(_) => {}
        }
    }
}

/// Once the deal's retention is over, its personal data goes: every delivery detail and every
/// reminder address. The orders stay (they are the record of what was sold). Every replica
/// tries; deleting twice is harmless.
async fn retention(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if app.clock.now() < app.deal().timeline.retire_at {
            continue;
        }
        let erase = db::bounded(
            "cannot delete personal data",
            sqlx::query(timedeal_api::personal_data::ERASE).execute(&app.db),
        );
        match erase.await {
            Ok(_) => {
                tracing::info!(
                    "retention is over: delivery details and reminder addresses deleted"
                );
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot delete personal data yet; retrying"),
        }
    }
}

/// A payment may have been held before a lapsed reservation's request died: its purchase is
/// fenced in PostgreSQL now, so it is voided (or refunded), once.
async fn reverse_lapsed(app: &App, id: i64, key: &str, amount: i64) {
    match app.payments.reverse(key, amount).await {
        Ok(Refund::Refunded(reference)) => {
            match db::record_lapse_refund(&app.db, id, &reference, amount).await {
                Ok(()) => {
                    tracing::info!(order = id, "the lapsed reservation's payment was refunded")
                }
                Err(error) => tracing::warn!(order = id, %error, "refunded; recording it failed"),
            }
        }
        Ok(Refund::Voided) => {
            tracing::info!(order = id, "the lapsed reservation's payment was voided")
        }
        Ok(Refund::NothingCharged) => {}
        Err(error) => {
            tracing::warn!(order = id, %error, "cannot void a lapsed reservation's payment; reconciliation will")
        }
    }
}

async fn tick(
    app: &App,
    publish: &watch::Sender<Figures>,
    refunds: &mpsc::UnboundedSender<LapsedPayment>,
    ticks: u64,
) -> Result<(), Error> {
    if ticks.is_multiple_of(10) {
        app.clock.sync(&app.redis).await?;
    }
    // Twice a second: a Redis that restarted (maybe a second behind) is noticed within that.
    if !app.figures.borrow().restored || ticks.is_multiple_of(5) {
        restore::restore_if_lost(app).await?;
    }
    let deal = app.deal();
    let now = app.clock.now();
    let now_ms = now.timestamp_millis();
    if ticks.is_multiple_of(20) {
        follow_stock(app).await?;
    }
    flush_marks(app, App::window(&deal)).await;
    let mut figures = app.queue.snapshot(now_ms).await?;
    if now >= deal.timeline.start && figures.drawn.is_none() && figures.restored {
        if let Some(drawn) = app.queue.open(now_ms).await? {
            tracing::info!(
                pre_queue = drawn,
                "the deal started: the pre-queue's size is fixed and its draw revealed"
            );
        }
        figures = app.queue.snapshot(now_ms).await?;
    }
    let step = admit(app, &deal, &figures, now).await?;
    if step.admitted > 0 {
        app.metrics.admissions.inc_by(step.admitted);
        tracing::debug!(
            admitted = step.admitted,
            head = step.head,
            "admitted shoppers"
        );
    }
    if ticks.is_multiple_of(5) {
        settle_lapsed(app, now_ms, refunds).await?;
    }
    if ticks.is_multiple_of(20) {
        for (id, shopper, quantity, epoch) in db::to_restock(&app.db).await? {
            orders::restock(app, id, &shopper, quantity, epoch).await;
        }
    }

    // Taken before the read: the figures are at least this fresh.
    let read_ms = app.clock.now().timestamp_millis();
    let figures = self::figures(app).await?;
    if ticks.is_multiple_of(20) {
        // The longest the line has been: kept as a sorted set's score, which `GT` only raises.
        let _: () = redis::cmd("ZADD")
            .arg(format!("{}peak", app.prefix))
            .arg("GT")
            .arg(figures.in_line())
            .arg("waiting")
            .query_async(&mut app.redis.clone())
            .await?;
    }
    app.metrics.queue_waiting.set(figures.in_line() as i64);
    app.metrics.queue_admitted.set(figures.active as i64);
    app.metrics.stock_remaining.set(figures.available.max(0));
    app.metrics.stock_reserved.set(figures.reserved);
    publish.send_if_modified(|current| {
        let changed = *current != figures;
        *current = figures;
        changed
    });
    app.figures_read_ms
        .store(read_ms, std::sync::atomic::Ordering::Relaxed);
    list_buyers(app, &figures).await
}

/// Lists the buyers once per sold-out stretch (and again when the list no longer holds), so
/// the sold-out answer to everyone else costs no Redis call; forgets them once it is not.
async fn list_buyers(app: &App, figures: &Figures) -> Result<(), Error> {
    let listed = app.buyers.read().unwrap_or_else(|e| e.into_inner()).clone();
    match listed {
        Some(buyers) if buyers.is_current(figures) => return Ok(()),
        None if !figures.sold_out() => return Ok(()),
        _ => {}
    }
    let listed = if figures.sold_out() {
        orders::buyers::list(&app.redis, &app.prefix, figures)
            .await?
            .map(Arc::new)
    } else {
        None
    };
    *app.buyers.write().unwrap_or_else(|e| e.into_inner()) = listed;
    Ok(())
}

/// Reservations past their TTL: if their order reached PostgreSQL after all, confirm them;
/// otherwise record the lapse there first (so a late commit cannot also land) and give the
/// stock back.
async fn settle_lapsed(
    app: &App,
    now_ms: i64,
    refunds: &mpsc::UnboundedSender<LapsedPayment>,
) -> Result<(), Error> {
    let lapsed = app.reservations.lapsed(now_ms, 100).await?;
    if lapsed.is_empty() {
        return Ok(());
    }
    let deal = app.deal();
    let epoch = app.figures.borrow().epoch;
    for stored in lapsed {
        let Some(reservation) = Reservation::parse(&stored) else {
            tracing::warn!("an unreadable reservation in Redis; giving it up");
            app.reservations.release(&stored).await;
            continue;
        };
        let (id, quantity) = (reservation.id, reservation.quantity);
        if epoch_of(id) != epoch {
            // Of an epoch that is over: it can never commit and counts in no figure. Its
            // purchase may go on under a new id, so its payment is left to that attempt, or
            // to reconciliation.
            app.reservations.release(&stored).await;
            continue;
        }
        let key = payments::purchase_key(&deal.name, &reservation.shopper, &reservation.key);
        // PostgreSQL away: the sweep stops here and the next tick tries again (waiting out each
        // reservation's timeout in turn would hold up the admissions behind it).
        let lapse = db::record_lapse(
            &app.db,
            id,
            &reservation.shopper,
            quantity,
            &reservation.key,
            &key,
            deal.spec.product.deal_price,
            &deal.spec.product.currency,
        )
        .await?;
        match lapse {
            Lapse::Recorded => {
                app.reservations.release(&stored).await;
                let amount = deal.spec.product.deal_price * quantity as i64;
                let _ = refunds.send((id, key, amount));
                app.metrics.order("lapsed");
                tracing::info!(order = id, quantity, "reservation lapsed; stock returned");
            }
            Lapse::Committed => {
                app.reservations.confirm(&[stored]).await;
                tracing::info!(order = id, "reservation found committed; confirmed");
            }
            Lapse::CommittedElsewhere => {
                app.reservations.release(&stored).await;
                tracing::info!(order = id, "the purchase was committed by a later attempt");
            }
        }
    }
    Ok(())
}
