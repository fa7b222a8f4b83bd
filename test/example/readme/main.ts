import { bootstrap } from './existing-app.js';

void bootstrap();
