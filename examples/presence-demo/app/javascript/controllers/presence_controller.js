// app/javascript/controllers/presence_controller.js
import { Controller } from "@hotwired/stimulus"
import consumer from "../channels/consumer"

export default class extends Controller {
  static targets = ["memberList", "memberCount"]
  static values = { roomId: Number }

  connect() {
    this.subscription = consumer.subscriptions.create(
      { channel: "PresenceChannel", room_id: this.roomIdValue },
      {
        connected: () => this.startHeartbeat(),
        disconnected: () => this.stopHeartbeat(),
        received: this.handlePresenceUpdate.bind(this)
      }
    )
  }

  disconnect() {
    this.stopHeartbeat()
    this.subscription?.unsubscribe()
  }

  startHeartbeat() {
    this.heartbeatInterval = setInterval(() => {
      this.subscription.perform('heartbeat')
    }, 15000) // Every 15 seconds
  }

  stopHeartbeat() {
    if (this.heartbeatInterval) {
      clearInterval(this.heartbeatInterval)
    }
  }

  handlePresenceUpdate(data) {
    switch(data.action) {
      case 'user_joined':
        this.addMember(data.user)
        break
      case 'user_left':
        this.removeMember(data.user.id)
        break
    }

    this.updateMemberCount(data.member_count)
  }

  addMember(user) {
    if (!this.memberListTarget.querySelector(`[data-user-id="${user.id}"]`)) {
      this.memberListTarget.insertAdjacentHTML('beforeend', `
        <div data-user-id="${user.id}" class="member">
          <img src="${user.avatar_url}" alt="${user.name}">
          <span>${user.name}</span>
        </div>
      `)
    }
  }

  removeMember(userId) {
    this.memberListTarget.querySelector(`[data-user-id="${userId}"]`)?.remove()
  }

  updateMemberCount(count) {
    this.memberCountTarget.textContent = count
  }
}
