//! The portal's pages, rendered on the server (maud). Every control has a label; errors sit next
//! to their field and are tied to it with `aria-describedby`.

pub mod account;
pub mod chart;
pub mod deals;

use maud::{html, Markup, DOCTYPE};

use crate::form::FieldErrors;

/// Who is signed in, for the navigation: the company's display name and the session's form token
/// (signing out is a form).
pub struct Nav<'a> {
    pub company: &'a str,
    pub csrf: &'a str,
}

pub fn layout(title: &str, nav: Option<&Nav>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Timedeal" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                header {
                    a.brand href="/" { "Timedeal" }
                    span { "flash-sale infrastructure, by the deal" }
                    @if let Some(nav) = nav {
                        nav aria-label="Account" {
                            span.company { (nav.company) }
                            a href="/deals" { "Your deals" }
                            a href="/deals/new" { "Request a deal" }
                            a href="/account/password" { "Password" }
                            form.inline method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(nav.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// One form control in its frame: label, hint, the control, and its errors, tied to the control
/// for screen readers. `control` gets the id of the error text when there is one.
pub fn labelled(
    name: &str,
    label: &str,
    hint: Option<&str>,
    errors: &FieldErrors,
    control: impl FnOnce(Option<&str>) -> Markup,
) -> Markup {
    let problems = errors.get(name).map(|p| p.join("; "));
    let error_id = format!("{name}-error");
    let described_by = problems.as_ref().map(|_| error_id.as_str());
    html! {
        div.field.invalid[problems.is_some()] {
            label for=(name) { (label) }
            @if let Some(hint) = hint { small.hint { (hint) } }
            (control(described_by))
            @if let Some(problems) = &problems {
                p.error id=(error_id) { (problems) }
            }
        }
    }
}

/// One labelled input with its errors.
pub fn field(
    name: &str,
    label: &str,
    value: &str,
    kind: &str,
    hint: Option<&str>,
    errors: &FieldErrors,
) -> Markup {
    labelled(name, label, hint, errors, |described_by| {
        html! {
            input type=(kind) id=(name) name=(name) value=(value)
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by];
        }
    })
}

pub fn select(
    name: &str,
    label: &str,
    value: &str,
    options: &[(String, String)],
    errors: &FieldErrors,
) -> Markup {
    labelled(name, label, None, errors, |described_by| {
        html! {
            select id=(name) name=(name)
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by] {
                @for (option, text) in options {
                    option value=(option) selected[option == value] { (text) }
                }
            }
        }
    })
}

pub fn textarea(name: &str, label: &str, value: &str, errors: &FieldErrors) -> Markup {
    labelled(name, label, None, errors, |described_by| {
        html! {
            textarea id=(name) name=(name) rows="3"
                aria-invalid=[described_by.map(|_| "true")]
                aria-describedby=[described_by] { (value) }
        }
    })
}

/// The page for an address that opens nothing, or nothing this visitor may see.
pub fn not_found(nav: Option<&Nav>) -> Markup {
    layout(
        "Not found",
        nav,
        html! { h1 { "Not found" } p { "There is nothing at this address." } },
    )
}

/// A page with one message and a way on.
pub fn message(title: &str, nav: Option<&Nav>, text: &str, link: (&str, &str)) -> Markup {
    layout(
        title,
        nav,
        html! {
            h1 { (title) }
            p.lead { (text) }
            p { a href=(link.0) { (link.1) } }
        },
    )
}
