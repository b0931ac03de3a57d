import { LabIcon } from '@jupyterlab/ui-components';

/** Three connected pipeline steps; `jp-icon3` lets the theme colour it. */
const MLW_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="2" y="3" width="7" height="6" rx="1.5"/>
    <rect x="15" y="3" width="7" height="6" rx="1.5"/>
    <rect x="8.5" y="15" width="7" height="6" rx="1.5"/>
    <path d="M5 9h1.6v2.2h10.8V9H19v3.8h-6.2V15h-1.6v-2.2H5z"/>
  </g>
</svg>`;

export const mlwIcon = new LabIcon({ name: 'mlops-workbench:logo', svgstr: MLW_SVG });
