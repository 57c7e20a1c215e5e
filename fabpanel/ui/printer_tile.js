// A printer tile drawn in the browser from one `tile` prop (see printer_tile.py): one NiceGUI element per tile,
// so a printer's change reaches each browser as one small update. Every text is a {{ }} interpolation: Vue
// renders it as text, never as HTML, so printer names, file names and printer messages cannot inject markup.
// `href` is built by the server from the printer's numeric id.
export default {
  template: `
    <div class="q-card">
      <div class="fp-ptile-head">
        <a v-if="tile.href" :href="tile.href" class="fp-tile-name fp-ptile-name">{{ tile.name }}</a>
        <div v-else class="fp-tile-name fp-ptile-name">{{ tile.name }}</div>
        <div class="fp-badge fp-ptile-badge"><q-icon :name="tile.icon" />{{ tile.label }}</div>
      </div>
      <div class="fp-ptile-line fp-ptile-temps">{{ tile.temps }}</div>
      <template v-if="tile.job !== undefined">
        <q-linear-progress :value="tile.fraction" rounded size="6px" class="fp-ptile-bar" />
        <div class="fp-ptile-line fp-ptile-job">{{ tile.job }}</div>
        <div v-if="tile.file" class="fp-ptile-line fp-ptile-file">{{ tile.file }}</div>
        <div v-if="tile.who" class="fp-ptile-line fp-ptile-who">{{ tile.who }}</div>
      </template>
      <div v-if="tile.note" class="fp-ptile-note" :data-stale="tile.stale ? 'true' : 'false'">{{ tile.note }}</div>
      <slot></slot>
    </div>`,
  props: {
    tile: { type: Object, default: () => ({}) },
  },
};
