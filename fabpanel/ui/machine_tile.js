// A machine tile drawn in the browser from its props (see machine_tile.py): one NiceGUI element per tile,
// so a board's change reaches each browser as one small update. Every text is a {{ }} interpolation: Vue renders
// it as text, never as HTML, so member and machine names cannot inject markup.
export default {
  template: `
    <div class="q-card">
      <div class="fp-tile-head">
        <div class="fp-tile-title">
          <div class="fp-tile-name">{{ name }}</div>
          <div v-if="type_name" class="fp-tile-type">{{ type_name }}</div>
        </div>
        <div class="fp-badge status">{{ label }}</div>
      </div>
      <div v-if="user" class="fp-tile-line fp-tile-user user">
        <q-icon name="person" /><div class="fp-user-name">{{ user }}</div>
      </div>
      <div v-if="since" class="fp-tile-note">{{ since }}</div>
      <div v-if="due" class="fp-tile-line fp-tile-warn">
        <q-icon name="build" /><div class="fp-tile-text">{{ warn }}</div>
      </div>
      <div v-if="alert" class="fp-tile-line fp-tile-alert">
        <q-icon name="warning" /><div class="fp-tile-text">{{ alert }}</div>
      </div>
    </div>`,
  props: {
    name: String,
    type_name: String,
    label: String,
    user: String,
    since: String,
    due: Boolean,
    warn: String,
    alert: String,
  },
};
