// The test page's JavaScript, bundled by esbuild as jsbundling-rails would:
// turbo-rails (Turbo Drive + <turbo-cable-stream-source>, on @rails/actioncable) and a
// small chat script on the declared ChatChannel, sharing turbo-rails' consumer as an
// app's own channels do.
import { cable } from "@hotwired/turbo-rails";

async function startChat(form) {
  const list = document.getElementById("chat");
  const names = JSON.parse(form.dataset.names);
  const subscription = await cable.subscribeTo(
    { channel: "ChatChannel", room: form.dataset.room },
    {
      connected() {
        form.setAttribute("connected", "");
      },
      disconnected() {
        form.removeAttribute("connected");
      },
      // ChatChannel#speak re-broadcasts { text, user_id }.
      received({ text, user_id }) {
        const item = document.createElement("li");
        item.dataset.userId = user_id;
        item.textContent = `${names[user_id] ?? `user ${user_id}`}: ${text}`;
        list.append(item);
      },
    },
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = form.elements.text;
    subscription.perform("speak", { text: input.value });
    input.value = "";
  });
}

startChat(document.getElementById("chat-form"));
