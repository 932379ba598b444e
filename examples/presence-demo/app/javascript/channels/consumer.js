// Action Cable provides the framework to deal with WebSockets in Rails.
// This is the file Rails generates (app/javascript/channels/consumer.js), with one
// demo-only addition: the user id comes from the page's own query string
// (`/?user_id=2&room=1`) and is passed on to the cable URL, where ferrocable's
// development identifier (`--dev-user-param user_id`) reads it. A real app drops
// that part: the browser sends the Rails session cookie and ferrocable reads it.
import { createConsumer, getConfig } from "@rails/actioncable"

// The cable URL comes from <meta name="action-cable-url">, which the page's layout
// writes, as Rails' `action_cable_meta_tag` does.
const url = new URL(getConfig("url") || "/cable", window.location.href)
const userId = new URLSearchParams(window.location.search).get("user_id")
if (userId) url.searchParams.set("user_id", userId)

export default createConsumer(url.toString())
