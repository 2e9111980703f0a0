//! Account pages: sign-up, sign-in, password change and the reset an admin sends.

use maud::{html, Markup};

use super::{field, layout, Nav};
use crate::form::FieldErrors;

fn general(errors: &FieldErrors) -> Markup {
    html! {
        @if let Some(problems) = errors.get("") {
            div.alert role="alert" id="form-errors" {
                @for problem in problems { p { (problem) } }
            }
        } @else if !errors.is_empty() {
            div.alert role="alert" id="form-errors" { "Some fields need attention; they are marked below." }
        }
    }
}

/// Sign-up: the company's name, and the email and password of its account.
pub fn sign_up(display_name: &str, email: &str, errors: &FieldErrors, csrf: &str) -> Markup {
    let e = errors;
    layout(
        "Sign up",
        None,
        html! {
            h1 { "Sign up your company" }
            p.lead { "One account per company. A platform admin approves new companies; then you can request deals." }
            (general(errors))
            form method="post" action="/signup" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (field("display_name", "Company name", display_name, "text", Some("as shoppers will see it"), e))
                (field("email", "Email", email, "email", Some("you sign in with it; we write here"), e))
                (field("password", "Password", "", "password", Some("12 characters or more"), e))
                (field("confirm", "Password again", "", "password", None, e))
                button type="submit" { "Sign up" }
            }
            p { "Already signed up? " a href="/signin" { "Sign in" } }
        },
    )
}

pub fn sign_in(email: &str, errors: &FieldErrors, csrf: &str, note: Option<&str>) -> Markup {
    let e = errors;
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(note) = note { div.notice role="status" { (note) } }
            (general(errors))
            form method="post" action="/signin" novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (field("email", "Email", email, "email", None, e))
                (field("password", "Password", "", "password", None, e))
                button type="submit" { "Sign in" }
            }
            p { "New here? " a href="/signup" { "Sign up your company" } }
            p.hint { "Forgot your password? Ask the platform admin for a reset link." }
        },
    )
}

pub fn change_password(nav: &Nav, errors: &FieldErrors, done: bool) -> Markup {
    let e = errors;
    layout(
        "Change password",
        Some(nav),
        html! {
            h1 { "Change password" }
            @if done { div.notice role="status" id="changed" { "Password changed. Other sessions of this account were signed out." } }
            (general(errors))
            form method="post" action="/account/password" novalidate {
                input type="hidden" name="csrf" value=(nav.csrf);
                (field("current", "Current password", "", "password", None, e))
                (field("password", "New password", "", "password", Some("12 characters or more"), e))
                (field("confirm", "New password again", "", "password", None, e))
                button type="submit" { "Change password" }
            }
        },
    )
}

/// The page a reset link opens: a new password for the company's account.
pub fn reset(company: &str, action: &str, errors: &FieldErrors, csrf: &str) -> Markup {
    let e = errors;
    layout(
        "Choose a new password",
        None,
        html! {
            h1 { "Choose a new password" }
            p.lead { "For the account of " strong { (company) } ". This link works once." }
            (general(errors))
            form method="post" action=(action) novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (field("password", "New password", "", "password", Some("12 characters or more"), e))
                (field("confirm", "New password again", "", "password", None, e))
                button type="submit" { "Set password" }
            }
        },
    )
}
