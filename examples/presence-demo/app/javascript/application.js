// Entry point of the bundle, as in a Rails app (app/javascript/application.js plus
// app/javascript/controllers/index.js): start Stimulus and register the controller.
import { Application } from "@hotwired/stimulus"
import PresenceController from "./controllers/presence_controller"

const application = Application.start()
application.register("presence", PresenceController)

window.Stimulus = application
