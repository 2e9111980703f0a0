//! The reminder and confirmation mails, and the SMTP connection it leaves by (lettre, pooled).

use std::time::Duration;

use lettre::{
    message::{
        header::{ContentType, HeaderName, HeaderValue},
        Mailbox,
    },
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use timedeal_api::money::format as money;

use super::Lead;
use crate::{deal::Deal, error::Error};

/// The longest one SMTP command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest one mail may take to hand over, all commands together. The row's lock is held
/// meanwhile, and PostgreSQL ends a transaction idle for 10 s (`db::connect`): a mail that took
/// longer would be sent and never marked, then sent again.
const SEND_TIMEOUT: Duration = Duration::from_secs(7);

/// The SMTP server reminders go through, and who they come from.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `url` is `smtp://[user:password@]host[:port]` (add `?tls=required` for STARTTLS) or
    /// `smtps://...` for TLS from the first byte; `from` a mailbox such as
    /// `Timedeal <deals@example.com>`. Needs the runtime (the pool keeps a task).
    pub fn new(url: &str, from: &str) -> Result<Self, Error> {
        let (builder, from) = Self::check(url, from)?;
        Ok(Self {
            transport: builder.timeout(Some(COMMAND_TIMEOUT)).build(),
            from,
        })
    }

    /// Checks the settings without connecting, naming the one that cannot work.
    pub fn check(
        url: &str,
        from: &str,
    ) -> Result<(lettre::transport::smtp::AsyncSmtpTransportBuilder, Mailbox), Error> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
            Error::Config(format!(
                "--smtp-url is not an SMTP URL ({e}): use smtp://host:port, \
                 smtp://user:password@host:587?tls=required or smtps://host:465"
            ))
        })?;
        let from = from.parse::<Mailbox>().map_err(|e| {
            Error::Config(format!(
                "--mail-from {from:?} is not a mailbox ({e}): use an address such as \
                 deals@example.com or \"Timedeal <deals@example.com>\""
            ))
        })?;
        Ok((builder, from))
    }

    pub async fn send(&self, message: Message) -> Result<(), Error> {
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            // lettre's errors name the server and the SMTP reply, never the recipient.
            Ok(Err(e)) if e.is_permanent() => Err(Error::MailRefused(e.to_string())),
            Ok(Err(e)) => Err(Error::Mail(e.to_string())),
            Err(_) => Err(Error::Mail(format!(
                "no answer within {} s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }
}

/// One reminder to write.
pub struct Reminder<'a> {
    pub deal: &'a Deal,
    pub lead: Lead,
    pub to: &'a str,
    pub from: &'a Mailbox,
    /// The link that removes the address (also offered to mail programs as one-click, RFC 8058).
    pub unsubscribe: &'a str,
    /// The storefront's address, without a trailing slash.
    pub storefront: &'a str,
    /// The same for every sending of one mail, so a mail sent twice reads as one message.
    pub message_id: String,
}

/// The subject and text of a reminder.
pub fn text(reminder: &Reminder<'_>) -> (String, String) {
    let deal = reminder.deal;
    let product = &deal.spec.product;
    let when = match reminder.lead {
        Lead::TwelveHours => "in 12 hours",
        Lead::OneHour => "in 1 hour",
    };
    let subject = format!("Starts {when}: {}", product.name);
    let price = if product.deal_price == 0 {
        "Free".to_owned()
    } else {
        format!(
            "{} instead of {}",
            money(product.deal_price, &product.currency),
            money(product.list_price, &product.currency)
        )
    };
    let body = format!(
        "{name} by {company}\n\
         starts {when}, at {start} (UTC).\n\
         \n\
         {price}, {stock} available.\n\
         The queue is fair: everyone there before the start\n\
         gets a place by draw.\n\
         \n\
         Go to the deal:\n\
         {storefront}/\n\
         \n\
         You get this mail because this address asked to be\n\
         reminded of this deal. No more reminders:\n\
         {unsubscribe}\n",
        name = product.name,
        company = deal.spec.company.name,
        start = deal.timeline.start.format("%a %-d %b %Y, %H:%M"),
        stock = product.stock,
        storefront = reminder.storefront,
        unsubscribe = reminder.unsubscribe,
    );
    (subject, body)
}

/// The whole mail.
pub fn compose(reminder: &Reminder<'_>) -> Result<Message, Error> {
    let (subject, body) = text(reminder);
    message(
        reminder.from,
        reminder.to,
        subject,
        body,
        reminder.unsubscribe,
        &reminder.message_id,
    )
}

/// The one mail a left address gets before any reminder: it goes to the address itself, so
/// only its owner can make it receive reminders.
pub struct Confirmation<'a> {
    pub deal: &'a Deal,
    pub to: &'a str,
    pub from: &'a Mailbox,
    /// The link whose page confirms the address.
    pub confirm: &'a str,
    /// The link that deletes the address now.
    pub unsubscribe: &'a str,
    /// When an unconfirmed address is deleted.
    pub confirm_by: chrono::DateTime<chrono::Utc>,
    pub message_id: String,
}

/// The subject and text of a confirmation mail.
pub fn confirmation_text(confirmation: &Confirmation<'_>) -> (String, String) {
    let deal = confirmation.deal;
    let product = &deal.spec.product;
    let subject = format!("Confirm your reminders: {}", product.name);
    let body = format!(
        "This address was left to be reminded of\n\
         {name} by {company},\n\
         which starts at {start} (UTC).\n\
         \n\
         To get the reminders, open this link and confirm:\n\
         {confirm}\n\
         \n\
         If it was not you, do nothing: no reminder is sent\n\
         without a confirmation, and the address is deleted\n\
         at {by} (UTC). Or delete it now:\n\
         {unsubscribe}\n",
        name = product.name,
        company = deal.spec.company.name,
        start = deal.timeline.start.format("%a %-d %b %Y, %H:%M"),
        confirm = confirmation.confirm,
        by = confirmation.confirm_by.format("%a %-d %b %Y, %H:%M"),
        unsubscribe = confirmation.unsubscribe,
    );
    (subject, body)
}

/// The whole confirmation mail.
pub fn compose_confirmation(confirmation: &Confirmation<'_>) -> Result<Message, Error> {
    let (subject, body) = confirmation_text(confirmation);
    message(
        confirmation.from,
        confirmation.to,
        subject,
        body,
        confirmation.unsubscribe,
        &confirmation.message_id,
    )
}

/// A plain-text mail with a one-click unsubscribe (RFC 8058) and a fixed Message-ID.
fn message(
    from: &Mailbox,
    to: &str,
    subject: String,
    body: String,
    unsubscribe: &str,
    message_id: &str,
) -> Result<Message, Error> {
    let to = to
        .parse::<Mailbox>()
        .map_err(|_| Error::MailRefused("a kept address no longer parses".into()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.to_owned()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{unsubscribe}>"),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Error::Mail(format!("cannot write the mail: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal() -> Deal {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/samples/timedeal.yaml");
        Deal::new(crate::deal::load(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_mail_says_when_what_and_how_to_stop() {
        let deal = deal();
        let from: Mailbox = "Timedeal <deals@example.com>".parse().unwrap();
        let reminder = Reminder {
            deal: &deal,
            lead: Lead::OneHour,
            to: "ana@example.com",
            from: &from,
            unsubscribe: "https://shop.example/reminders/unsubscribe?token=abc",
            storefront: "https://shop.example",
            message_id: "<reminder-7-1h@shop.example>".into(),
        };
        let (subject, body) = text(&reminder);
        assert_eq!(
            subject,
            format!("Starts in 1 hour: {}", deal.spec.product.name)
        );
        assert!(body.contains(&deal.spec.company.name));
        assert!(body.contains("\nhttps://shop.example/\n"), "{body}");
        assert!(body.contains(
            "No more reminders:\nhttps://shop.example/reminders/unsubscribe?token=abc\n"
        ));
        let raw = String::from_utf8(compose(&reminder).unwrap().formatted()).unwrap();
        assert!(raw.contains(
            "List-Unsubscribe: <https://shop.example/reminders/unsubscribe?token=abc>\r\n"
        ));
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(raw.contains("Message-ID: <reminder-7-1h@shop.example>\r\n"));
    }

    #[test]
    fn the_confirmation_says_what_was_asked_and_how_to_refuse() {
        let deal = deal();
        let from: Mailbox = "Timedeal <deals@example.com>".parse().unwrap();
        let confirmation = Confirmation {
            deal: &deal,
            to: "ana@example.com",
            from: &from,
            confirm: "https://shop.example/reminders/confirm?token=abc",
            unsubscribe: "https://shop.example/reminders/unsubscribe?token=abc",
            confirm_by: "2026-12-24T18:00:00Z".parse().unwrap(),
            message_id: "<confirm-7@shop.example>".into(),
        };
        let (subject, body) = confirmation_text(&confirmation);
        assert_eq!(
            subject,
            format!("Confirm your reminders: {}", deal.spec.product.name)
        );
        assert!(body.contains("confirm:\nhttps://shop.example/reminders/confirm?token=abc\n"));
        assert!(body.contains("Thu 24 Dec 2026, 18:00 (UTC)"), "{body}");
        assert!(body.contains("now:\nhttps://shop.example/reminders/unsubscribe?token=abc\n"));
        let raw =
            String::from_utf8(compose_confirmation(&confirmation).unwrap().formatted()).unwrap();
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    }

    #[test]
    fn a_bad_server_or_sender_is_named() {
        let error = Mailer::check("http://mail.example", "deals@example.com")
            .err()
            .unwrap();
        assert!(error.to_string().contains("--smtp-url"), "{error}");
        assert!(Mailer::check("smtp://127.0.0.1:2525", "Timedeal <deals@example.com>").is_ok());
        let error = Mailer::check("smtp://127.0.0.1:2525", "not a mailbox")
            .err()
            .unwrap();
        assert!(error.to_string().contains("--mail-from"), "{error}");
    }
}
