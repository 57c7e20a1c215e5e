// The dashboard's counters (free, in use, maintenance due, board offline) as one NiceGUI element: a board's change
// moves two numbers, sent in the same small update as the tile. Texts are {{ }} interpolations (text, not HTML).
export default {
  template: `
    <div class="fp-stats">
      <div v-for="[key, label] in labels" :key="key" class="fp-stat" :data-counter="key">
        <div class="fp-stat-value">{{ $props[key] }}</div>
        <div class="fp-stat-label">{{ label }}</div>
      </div>
    </div>`,
  props: {
    labels: Array, // [[key, translated label], ...], in the order shown
    free: Number,
    in_use: Number,
    maintenance: Number,
    offline: Number,
  },
};
